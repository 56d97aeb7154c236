/* elliott chat: a conversation in the terminal. Lines from stdin are the user's
 * turns; replies stream to stdout. The engine's prefix cache keeps each turn from
 * re-reading the whole conversation. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/wipebuf.h"
#include "cli/args.h"
#include "cli/cli_engine.h"
#include "cli/commands.h"
#include "cli/embedded_model.h"
#include "engine/engine.h"

#define CHAT_DEFAULT_MAX_TOKENS 512
#define CHAT_MAX_LINE (1u << 20)
#define CHAT_MAX_TURNS 4096

static void usage(FILE *out)
{
    cli_gen_options defaults;
    cli_gen_defaults(&defaults, CHAT_DEFAULT_MAX_TOKENS);
    fprintf(out,
            "usage: elliott chat [-m MODEL.gguf] [options]\n"
            "\n"
            "Chats in the terminal: each line you type is a turn, the reply streams back.\n"
            "'/reset' starts a new conversation; '/exit' or end of input (Ctrl-D) quits.\n"
            "\n"
            "options:\n"
            "  -m, --model FILE    GGUF model (default: the built-in %s)\n"
            "      --system TEXT   a system message that starts every conversation\n",
            EMBEDDED_MODEL_NAME);
    cli_gen_usage(out, &defaults);
    fprintf(out, "  -h, --help          this help\n");
}

/* 0 to run, 1 when --help was shown, 2 on a usage error. */
static int parse_options(int argc, char **argv, cli_gen_options *o)
{
    static const struct option longopts[] = {CLI_GEN_LONGOPTS, {NULL, 0, NULL, 0}};
    const char *cmd = argv[0];
    cli_gen_defaults(o, CHAT_DEFAULT_MAX_TOKENS);
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":" CLI_GEN_SHORTOPTS, longopts, NULL)) != -1) {
        int taken = cli_gen_option(cmd, c, optarg, o);
        if (taken < 0)
            return 2;
        if (taken)
            continue;
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        return args_option_error(cmd, c, argv);
    }
    if (optind < argc)
        return args_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    return 0;
}

/* ---- the conversation ------------------------------------------------------------ */

typedef struct conversation {
    chat_message msgs[CHAT_MAX_TURNS];
    size_t n;
    size_t n_fixed; /* the system message, kept across /reset */
} conversation;

static void wipe_text(chat_message *m)
{
    wipe_free((char *)m->text, m->len);
    m->text = NULL;
    m->len = 0;
}

static void conversation_truncate(conversation *c, size_t n)
{
    while (c->n > n)
        wipe_text(&c->msgs[--c->n]);
}

/* Takes ownership of text (malloc'd). */
static int conversation_add(conversation *c, enum chat_role role, char *text, size_t len)
{
    if (c->n == CHAT_MAX_TURNS) {
        wipe_free(text, len);
        return -1;
    }
    c->msgs[c->n++] = (chat_message){.role = role, .text = text, .len = len};
    return 0;
}

static char *copy_text(const char *s, size_t len)
{
    char *t = malloc(len ? len : 1);
    if (t && len)
        memcpy(t, s, len);
    return t;
}

/* ---- one turn -------------------------------------------------------------------- */

/* Generates the assistant's turn; adds it to the conversation. -1 when the turn
 * could not be generated (the user's message is then taken back). */
static int take_turn(const char *cmd, engine *e, conversation *c, const gen_params *params)
{
    el_err err = {{0}};
    gen_request *r = NULL;
    enum gen_status status = engine_submit(e, c->msgs, c->n, params, &r, &err);
    if (status != GEN_OK) {
        if (status == GEN_ERR_CONTEXT)
            fprintf(stderr, "elliott %s: the conversation no longer fits the context; /reset starts a new one\n",
                    cmd);
        else
            fprintf(stderr, "elliott %s: %s\n", cmd, err.msg);
        return -1;
    }
    wipebuf rp = {0};
    gen_event ev;
    int rc = 0;
    for (;;) {
        gen_next(r, &ev, -1);
        if (ev.kind == GEN_EVENT_DONE)
            break;
        fwrite(ev.text, 1, ev.len, stdout);
        fflush(stdout);
        if (wipebuf_append(&rp, ev.text, ev.len) < 0) {
            gen_cancel(r);
            rc = -1;
        }
    }
    fputc('\n', stdout);
    fflush(stdout);
    gen_release(r);
    if (ev.finish == GEN_FINISH_ERROR) {
        fprintf(stderr, "elliott %s: generation failed\n", cmd);
        rc = -1;
    }
    if (rc < 0) {
        wipebuf_free(&rp);
        return rc;
    }
    size_t len;
    char *reply = wipebuf_take(&rp, &len);
    if (conversation_add(c, CHAT_ROLE_ASSISTANT, reply ? reply : copy_text("", 0), len) < 0) {
        fprintf(stderr, "elliott %s: the conversation is too long; /reset starts a new one\n", cmd);
        return -1;
    }
    return rc;
}

static void chomp(char *line, size_t *len)
{
    while (*len && (line[*len - 1] == '\n' || line[*len - 1] == '\r'))
        line[--*len] = '\0';
}

int cmd_chat(int argc, char **argv)
{
    const char *cmd = argv[0];
    cli_gen_options o;
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;
    engine_config cfg;
    cli_gen_engine_config(cmd, &o, true, &cfg);
    engine *e = cli_engine_start(cmd, &cfg, true);
    if (!e)
        return 1;
    static conversation conv; /* large: kept off the stack */
    memset(&conv, 0, sizeof conv);
    if (o.system) {
        char *text = copy_text(o.system, strlen(o.system));
        if (text && conversation_add(&conv, CHAT_ROLE_SYSTEM, text, strlen(o.system)) == 0)
            conv.n_fixed = 1;
    }
    gen_params params;
    cli_gen_params(&o, &params);

    bool interactive = isatty(STDIN_FILENO);
    if (interactive)
        fprintf(stderr, "elliott: chatting; /reset starts over, /exit or Ctrl-D quits\n");
    char *line = NULL;
    size_t line_cap = 0;
    for (;;) {
        if (interactive) {
            fputs("> ", stderr);
            fflush(stderr);
        }
        ssize_t got = wipe_getline(&line, &line_cap, stdin);
        if (got < 0)
            break;
        size_t len = (size_t)got;
        chomp(line, &len);
        if (len == 0)
            continue;
        if (!strcmp(line, "/exit"))
            break;
        if (!strcmp(line, "/reset")) {
            conversation_truncate(&conv, conv.n_fixed);
            fprintf(stderr, "elliott: new conversation\n");
            continue;
        }
        if (len > CHAT_MAX_LINE) {
            fprintf(stderr, "elliott %s: a line is limited to %u bytes\n", cmd, CHAT_MAX_LINE);
            continue;
        }
        char *text = copy_text(line, len);
        explicit_bzero(line, len);
        if (!text || conversation_add(&conv, CHAT_ROLE_USER, text, len) < 0) {
            fprintf(stderr, "elliott %s: the conversation is too long; /reset starts a new one\n", cmd);
            continue;
        }
        size_t before = conv.n - 1;
        if (take_turn(cmd, e, &conv, &params) < 0)
            conversation_truncate(&conv, before);
    }
    wipe_free(line, line_cap);
    conversation_truncate(&conv, 0);
    engine_free(e);
    return 0;
}
