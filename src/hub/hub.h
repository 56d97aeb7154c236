/* Downloading GGUF files from a Hugging Face repository.
 *
 * URLs (ENDPOINT is $HF_ENDPOINT, default https://huggingface.co):
 *   listing:  ENDPOINT/api/models/REPO/tree/REVISION?recursive=true (pages followed
 *             through the Link header)
 *   file:     ENDPOINT/REPO/resolve/REVISION/FILE, redirects followed
 * $HF_TOKEN, when set, is sent as "Authorization: Bearer" to the endpoint's host
 * only: libcurl drops it when a redirect leads to another host (the CDN).
 *
 * A download goes to DIR/NAME.part (NAME: the last path component of FILE), resumes
 * with a Range request when that file exists, is checked against the SHA-256 that
 * Hugging Face publishes for LFS files (X-Linked-Etag, or an ETag that is 64 hex
 * digits), must begin with the GGUF magic and open as GGUF, and is then renamed to
 * DIR/NAME. */
#ifndef ELLIOTT_HUB_H
#define ELLIOTT_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef struct hub_request {
    const char *endpoint; /* NULL: $HF_ENDPOINT, else https://huggingface.co */
    const char *token;    /* NULL: $HF_TOKEN; "" for none */
    const char *repo;     /* "owner/name" */
    const char *revision; /* NULL: "main" */
    const char *file;     /* path inside the repository (downloads only) */
    const char *dest_dir; /* created when missing (downloads only) */
} hub_request;

/* ---- listing ------------------------------------------------------------------ */

typedef struct hub_file {
    char *path;
    uint64_t size;
} hub_file;

typedef struct hub_file_list {
    hub_file *files;
    size_t count;
} hub_file_list;

/* The repository's .gguf files (split-model parts "-00001-of-00003.gguf" excluded:
 * they cannot be loaded alone), sorted by path. */
int hub_list_gguf(const hub_request *req, hub_file_list *out, el_err *err);
void hub_file_list_free(hub_file_list *list);

/* The file to fetch when none is named: the only one; else the one whose name has
 * Q4_K_M; else Q4_0; else the smallest. NULL with a message naming the candidates
 * when that is ambiguous (two matches of the same preference or the same size) or
 * the list is empty. */
const hub_file *hub_choose_default(const hub_file_list *list, el_err *err);

/* ---- downloading ---------------------------------------------------------------- */

typedef struct hub_progress {
    uint64_t done;         /* bytes of the file on disk so far */
    uint64_t total;        /* 0 while unknown */
    uint64_t resumed_from; /* bytes already there when this transfer began */
    bool finished;         /* the last call of a transfer */
} hub_progress;

typedef void (*hub_progress_fn)(void *ctx, const hub_progress *p);

typedef struct hub_result {
    char path[4096];     /* the final file */
    bool already_there;  /* DIR/NAME existed: nothing was downloaded */
    bool verified;       /* the server published a SHA-256 and the file matches it */
    char sha256[65];     /* the file's SHA-256 in hex ("" when already_there) */
    uint64_t size;       /* bytes in the final file */
    bool retryable;      /* on failure: a network error that a new attempt resumes */
    long http_status;    /* the last status seen, 0 if none */
} hub_result;

/* Downloads req->file. progress may be NULL; it is called from the transfer as
 * bytes arrive. On failure the .part file is kept when a later call can resume
 * from it and removed when its content is known to be wrong. */
int hub_download(const hub_request *req, hub_progress_fn progress, void *ctx, hub_result *res,
                 el_err *err);

/* Where models go by default: $ELLIOTT_MODELS, else $XDG_CACHE_HOME/elliott/models
 * (when that is an absolute path), else $HOME/.cache/elliott/models. */
int hub_default_dir(char *buf, size_t size, el_err *err);

#endif
