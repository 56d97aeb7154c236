/* Request framing checks on what libmicrohttpd hands over: the raw request
 * target (before any percent-decoding) and each header as parsed. They refuse
 * what a proxy in front could read differently from us (two lengths, a length
 * beside a transfer coding, an unknown coding, odd bytes in a header) and
 * targets whose decoding would change their meaning (%00, an encoded '/'). */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "server/server_internal.h"

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

const char *framing_check_target(const char *raw)
{
    if (!raw || raw[0] != '/')
        return "the request target must be an absolute path";
    bool in_query = false;
    for (const char *p = raw; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f)
            return "the request target holds a space, a control or a non-ASCII byte";
        if (c == '?')
            in_query = true;
        if (c != '%')
            continue;
        if (!is_hex(p[1]) || !is_hex(p[2]))
            return "the request target holds a malformed percent escape";
        if (p[1] == '0' && p[2] == '0')
            return "the request target holds an encoded NUL (%00)";
        if (!in_query && p[1] == '2' && (p[2] == 'f' || p[2] == 'F'))
            return "the request path holds an encoded '/' (%2F)";
        if (!in_query && p[1] == '5' && (p[2] == 'c' || p[2] == 'C'))
            return "the request path holds an encoded '\\' (%5C)";
    }
    return NULL;
}

static bool is_token_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", c);
}

static bool is_name(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_token_char((unsigned char)s[i]))
            return false;
    return true;
}

/* Visible ASCII, spaces and tabs only: a bare CR, a NUL the parser let
 * through, or any other control byte is refused. Bytes >= 0x80 are allowed
 * (obs-text). */
static bool is_field_value(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

void framing_note_header(framing_scan *f, const char *name, size_t name_len, const char *value, size_t value_len)
{
    if (f->status)
        return;
    if (!is_name(name, name_len)) {
        f->status = 400;
        f->why = "a header name holds a space, a control byte or a separator";
        return;
    }
    if (!value || !is_field_value(value, value_len) || strlen(value) != value_len) {
        f->status = 400;
        f->why = "a header value holds a control byte (CR, NUL, ...)";
        return;
    }
    if (!strcasecmp(name, "Content-Length"))
        f->n_content_length++;
    else if (!strcasecmp(name, "Transfer-Encoding")) {
        f->n_transfer_encoding++;
        f->transfer_encoding = value;
    } else if (!strcasecmp(name, "Host"))
        f->n_host++;
}

void framing_verdict(framing_scan *f, bool http_1_1)
{
    if (f->status)
        return;
    if (f->n_content_length > 1) {
        f->status = 400;
        f->why = "more than one Content-Length header";
    } else if (f->n_transfer_encoding > 1) {
        f->status = 400;
        f->why = "more than one Transfer-Encoding header";
    } else if (f->n_transfer_encoding == 1 && f->n_content_length == 1) {
        f->status = 400;
        f->why = "both Content-Length and Transfer-Encoding";
    } else if (f->n_transfer_encoding == 1 && strcasecmp(f->transfer_encoding, "chunked") != 0) {
        f->status = 501;
        f->why = "unsupported Transfer-Encoding: only chunked is understood";
    } else if (f->n_host > 1 || (http_1_1 && f->n_host == 0)) {
        f->status = 400;
        f->why = "an HTTP/1.1 request needs exactly one Host header";
    }
}
