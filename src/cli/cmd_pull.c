/* elliott pull: download a GGUF model from a Hugging Face repository. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "hub/hub.h"

enum { DEFAULT_RETRIES = 3, MAX_RETRIES = 100 };

static void usage(FILE *out)
{
    fprintf(out,
            "usage: elliott pull REPO [FILE] [options]\n"
            "\n"
            "Downloads a GGUF model from a Hugging Face repository. The file is written to\n"
            "DIR/NAME.part, which a later run resumes; it is checked against the SHA-256 that\n"
            "the hub publishes, must be a valid GGUF file, and is then renamed to DIR/NAME.\n"
            "A file already at DIR/NAME is kept as it is. The final path is printed on\n"
            "stdout; progress goes to stderr.\n"
            "\n"
            "arguments:\n"
            "  REPO                 owner/name, e.g. google/gemma-7b-it-GGUF\n"
            "  FILE                 the .gguf file to fetch, e.g. gemma-7b-it.gguf; without it\n"
            "                       the repository's .gguf files are listed and one is chosen:\n"
            "                       the only one, else Q4_K_M, else Q4_0, else the smallest\n"
            "\n"
            "options:\n"
            "  -o, --output DIR     where to put it (default: $ELLIOTT_MODELS, else\n"
            "                       $XDG_CACHE_HOME/elliott/models, else ~/.cache/elliott/models)\n"
            "  -r, --revision REV   branch, tag or commit (default: main)\n"
            "      --retries N      resume automatically after N network failures (default: %d)\n"
            "  -l, --list           list the repository's .gguf files and exit\n"
            "  -h, --help           this help\n"
            "\n"
            "Environment: HF_ENDPOINT (default https://huggingface.co); HF_TOKEN, an access\n"
            "token sent as a bearer token to HF_ENDPOINT's host only (never to a redirect's);\n"
            "ELLIOTT_MODELS and XDG_CACHE_HOME, for the default DIR.\n",
            DEFAULT_RETRIES);
}

/* ---- progress ------------------------------------------------------------------- */

typedef struct progress_state {
    bool tty;
    bool in_transfer;
    double started;      /* when this transfer's first bytes arrived */
    double last_print;
    uint64_t start_bytes;
    int next_decile;     /* non-TTY: the next 10% step that gets a line */
    int line_len;
    uint64_t last_printed; /* bytes shown by the last line */
} progress_state;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void format_bytes(uint64_t n, char *buf, size_t size)
{
    if (n >= 1000000000ull)
        snprintf(buf, size, "%.2f GB", (double)n / 1e9);
    else if (n >= 1000000ull)
        snprintf(buf, size, "%.1f MB", (double)n / 1e6);
    else
        snprintf(buf, size, "%.1f kB", (double)n / 1e3);
}

static void format_eta(double seconds, char *buf, size_t size)
{
    if (!(seconds >= 0) || seconds > 359999) {
        snprintf(buf, size, "--:--");
        return;
    }
    long s = (long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, size, "%ld:%02ld", s / 60, s % 60);
}

static void print_progress(progress_state *st, const hub_progress *p, double t)
{
    char done[32], total[32], eta[32], bar[33];
    double elapsed = t - st->started;
    double rate = elapsed > 0 ? (double)(p->done - st->start_bytes) / elapsed : 0;
    format_bytes(p->done, done, sizeof done);
    if (p->total) {
        double fraction = (double)p->done / (double)p->total;
        int width = (int)sizeof bar - 1, filled = (int)(fraction * width);
        for (int i = 0; i < width; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[width] = '\0';
        format_bytes(p->total, total, sizeof total);
        format_eta(rate > 0 ? (double)(p->total - p->done) / rate : -1, eta, sizeof eta);
        int n = fprintf(stderr, "%s[%s] %5.1f%%  %s / %s  %.1f MB/s  ETA %s%s",
                        st->tty ? "\r" : "", bar, 100 * fraction, done, total, rate / 1e6, eta,
                        st->tty ? "" : "\n");
        if (st->tty && n < st->line_len)
            fprintf(stderr, "%*s", st->line_len - n, "");
        st->line_len = n;
    } else {
        fprintf(stderr, "%s%s  %.1f MB/s%s", st->tty ? "\r" : "", done, rate / 1e6,
                st->tty ? "   " : "\n");
    }
    fflush(stderr);
    st->last_print = t;
    st->last_printed = p->done;
}

/* A live bar on a terminal (at most 10 redraws a second); otherwise a plain line
 * every 10% or 30 seconds, so logs stay short. */
static void on_progress(void *ctx, const hub_progress *p)
{
    progress_state *st = ctx;
    double t = now_seconds();
    if (!st->in_transfer) {
        st->in_transfer = true;
        st->started = st->last_print = t;
        st->start_bytes = p->resumed_from;
        st->next_decile = p->total ? (int)(10 * p->done / p->total) + 1 : 1;
        st->line_len = 0;
        st->last_printed = p->resumed_from;
        if (p->resumed_from)
            fprintf(stderr, "resuming at %" PRIu64 " bytes\n", p->resumed_from);
    }
    bool due;
    if (p->finished)
        due = p->done > st->start_bytes && p->done != st->last_printed;
    else if (st->tty)
        due = t - st->last_print >= 0.1;
    else
        due = t - st->last_print >= 30 ||
              (p->total && (int)(10 * p->done / p->total) >= st->next_decile);
    if (due) {
        print_progress(st, p, t);
        if (!st->tty && p->total)
            st->next_decile = (int)(10 * p->done / p->total) + 1;
    }
    if (p->finished) {
        if (st->tty && st->last_printed > st->start_bytes)
            fputc('\n', stderr);
        st->in_transfer = false;
    }
}

/* ---- choosing and fetching ---------------------------------------------------------- */

static int list_files(const hub_request *req)
{
    hub_file_list list;
    el_err err;
    if (hub_list_gguf(req, &list, &err) < 0) {
        fprintf(stderr, "elliott pull: %s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < list.count; i++) {
        char size[32];
        format_bytes(list.files[i].size, size, sizeof size);
        printf("%10s  %s\n", size, list.files[i].path);
    }
    if (list.count == 0)
        fprintf(stderr, "elliott pull: %s has no .gguf file\n", req->repo);
    hub_file_list_free(&list);
    return 0;
}

/* Picks the file when none was named; *chosen is allocated. */
static int choose_file(const hub_request *req, char **chosen)
{
    hub_file_list list;
    el_err err;
    if (hub_list_gguf(req, &list, &err) < 0) {
        fprintf(stderr, "elliott pull: %s\n", err.msg);
        return 1;
    }
    const hub_file *f = hub_choose_default(&list, &err);
    if (!f) {
        fprintf(stderr, "elliott pull: %s: %s\n", req->repo, err.msg);
        hub_file_list_free(&list);
        return 1;
    }
    char size[32];
    format_bytes(f->size, size, sizeof size);
    fprintf(stderr, "elliott pull: choosing %s (%s) of %zu .gguf file%s\n", f->path, size,
            list.count, list.count == 1 ? "" : "s");
    *chosen = strdup(f->path);
    hub_file_list_free(&list);
    if (!*chosen) {
        fprintf(stderr, "elliott pull: out of memory\n");
        return 1;
    }
    return 0;
}

static int fetch(const hub_request *req, int retries)
{
    progress_state st = { .tty = isatty(STDERR_FILENO) == 1 };
    hub_result res;
    el_err err;
    for (int attempt = 0;; attempt++) {
        if (hub_download(req, on_progress, &st, &res, &err) == 0)
            break;
        if (!res.retryable || attempt >= retries) {
            fprintf(stderr, "elliott pull: %s\n", err.msg);
            return 1;
        }
        int wait = attempt + 1 < 8 ? attempt + 1 : 8;
        fprintf(stderr, "elliott pull: %s; retrying in %d s (%d of %d)\n", err.msg, wait,
                attempt + 1, retries);
        sleep((unsigned)wait);
    }
    if (res.already_there)
        fprintf(stderr, "elliott pull: %s is already there (delete it to download again)\n", res.path);
    else if (res.verified)
        fprintf(stderr, "elliott pull: sha256 %s verified\n", res.sha256);
    else
        fprintf(stderr, "elliott pull: sha256 %s (the server published no checksum to compare)\n",
                res.sha256);
    printf("%s\n", res.path);
    return fflush(stdout) == 0 ? 0 : 1;
}

int cmd_pull(int argc, char **argv)
{
    static const struct option options[] = {
        { "output", required_argument, NULL, 'o' },
        { "revision", required_argument, NULL, 'r' },
        { "retries", required_argument, NULL, 'R' },
        { "list", no_argument, NULL, 'l' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    hub_request req = { 0 };
    int retries = DEFAULT_RETRIES;
    bool list_only = false;
    const char *dir = NULL;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:r:lh", options, NULL)) != -1) {
        switch (c) {
        case 'o': dir = optarg; break;
        case 'r': req.revision = optarg; break;
        case 'R':
            if (args_int("pull", "--retries", optarg, 0, MAX_RETRIES, &retries) < 0)
                return 2;
            break;
        case 'l': list_only = true; break;
        case 'h': usage(stdout); return 0;
        default: return args_option_error("pull", c, argv);
        }
    }
    int positional = argc - optind;
    if (positional < 1 || positional > 2)
        return args_usage_error("pull", "expected REPO and optionally FILE (see --help)");
    req.repo = argv[optind];
    req.file = positional == 2 ? argv[optind + 1] : NULL;
    if (list_only)
        return list_files(&req);

    char default_dir[4096];
    if (!dir) {
        el_err err;
        if (hub_default_dir(default_dir, sizeof default_dir, &err) < 0) {
            fprintf(stderr, "elliott pull: %s\n", err.msg);
            return 1;
        }
        dir = default_dir;
    }
    req.dest_dir = dir;
    char *chosen = NULL;
    if (!req.file) {
        int rc = choose_file(&req, &chosen);
        if (rc)
            return rc;
        req.file = chosen;
    }
    int rc = fetch(&req, retries);
    free(chosen);
    return rc;
}
