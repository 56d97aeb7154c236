/* The certificate check made before serving HTTPS: libmicrohttpd would only
 * say that its daemon failed to start. */
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <string.h>
#include <time.h>

#include "server/server.h"

int server_check_tls(const char *cert_pem, const char *key_pem, el_err *err)
{
    gnutls_certificate_credentials_t cred;
    if (gnutls_certificate_allocate_credentials(&cred) < 0)
        return el_fail(err, "TLS: out of memory");
    gnutls_datum_t cert = {(unsigned char *)cert_pem, (unsigned)strlen(cert_pem)};
    gnutls_datum_t key = {(unsigned char *)key_pem, (unsigned)strlen(key_pem)};
    int rc = gnutls_certificate_set_x509_key_mem2(cred, &cert, &key, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (rc < 0) {
        gnutls_certificate_free_credentials(cred);
        if (rc == GNUTLS_E_CERTIFICATE_KEY_MISMATCH)
            return el_fail(err, "the TLS key does not belong to the certificate");
        return el_fail(err, "the TLS certificate or key cannot be used: %s", gnutls_strerror(rc));
    }
    gnutls_x509_crt_t *chain = NULL;
    unsigned n = 0;
    rc = gnutls_certificate_get_x509_crt(cred, 0, &chain, &n);
    if (rc >= 0 && n > 0) {
        time_t until = gnutls_x509_crt_get_expiration_time(chain[0]);
        time_t from = gnutls_x509_crt_get_activation_time(chain[0]);
        time_t now = time(NULL);
        for (unsigned i = 0; i < n; i++)
            gnutls_x509_crt_deinit(chain[i]);
        gnutls_free(chain);
        if (until != (time_t)-1 && until < now)
            rc = el_fail(err, "the TLS certificate expired");
        else if (from != (time_t)-1 && from > now)
            rc = el_fail(err, "the TLS certificate is not valid yet");
        else
            rc = 0;
    } else {
        rc = el_fail(err, "the TLS certificate file holds no certificate");
    }
    gnutls_certificate_free_credentials(cred);
    return rc;
}
