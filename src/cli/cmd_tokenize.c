/* elliott tokenize: the token ids of a text under a model's tokenizer, as JSON. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli_input.h"
#include "cli/commands.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

/* A text file larger than this is surely a mistake. */
enum { MAX_TEXT_BYTES = 256 << 20 };

static void usage(FILE *out)
{
    fprintf(out, "usage: elliott tokenize -m MODEL.gguf [--special] [--bos] [--pieces] [--text-file FILE | TEXT]\n\n"
                 "Prints the token ids of TEXT (or of FILE, or of standard input when neither is\n"
                 "given) as a JSON array on one line.\n\n"
                 "options:\n"
                 "  -m, --model FILE     the GGUF file whose tokenizer to use (a vocabulary-only file works)\n"
                 "  -s, --special        recognise special-token text such as <start_of_turn>; without it,\n"
                 "                       such text is tokenized as the plain characters it is\n"
                 "  -b, --bos            start with the model's BOS token (when it has one)\n"
                 "  -p, --pieces         also print each token's text, as a JSON array on a second line\n"
                 "  -f, --text-file FILE read the text from FILE\n"
                 "  -h, --help           this help\n");
}

static void print_json_string(const char *s, size_t len)
{
    putchar('"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c < 0x20 || c == 0x7f)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void print_ids(const token_vec *ids)
{
    putchar('[');
    for (size_t i = 0; i < ids->n; i++)
        printf("%s%d", i ? "," : "", ids->ids[i]);
    fputs("]\n", stdout);
}

static void print_pieces(const tokenizer *t, const token_vec *ids)
{
    putchar('[');
    for (size_t i = 0; i < ids->n; i++) {
        size_t len;
        const char *piece = tokenizer_piece(t, ids->ids[i], &len);
        if (i)
            putchar(',');
        print_json_string(piece ? piece : "", len);
    }
    fputs("]\n", stdout);
}

typedef struct tokenize_options {
    const char *model;
    const char *text_file;
    const char *text;
    bool special, bos, pieces;
} tokenize_options;

/* 0: run; 1: --help was printed; 2: usage error (reported). */
static int parse_options(int argc, char **argv, tokenize_options *o)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'}, {"special", no_argument, NULL, 's'},
        {"bos", no_argument, NULL, 'b'},         {"pieces", no_argument, NULL, 'p'},
        {"text-file", required_argument, NULL, 'f'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:sbpf:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 's': o->special = true; break;
        case 'b': o->bos = true; break;
        case 'p': o->pieces = true; break;
        case 'f': o->text_file = optarg; break;
        case 'h': usage(stdout); return 1;
        default: return args_option_error(argv[0], c, argv);
        }
    }
    if (!o->model)
        return args_usage_error(argv[0], "a model is required (-m MODEL.gguf)");
    if (argc - optind > 1)
        return args_usage_error(argv[0], "give the text as one argument (quote it)");
    if (argc - optind == 1) {
        if (o->text_file)
            return args_usage_error(argv[0], "give either TEXT or --text-file, not both");
        o->text = argv[optind];
    }
    return 0;
}

static int tokenize_and_print(const char *cmd, const tokenizer *t, const tokenize_options *o, const char *text,
                              size_t len)
{
    token_vec ids = {0};
    el_err err = {{0}};
    int rc = 0;
    if (o->bos && tokenizer_bos(t) >= 0)
        rc = token_vec_push(&ids, tokenizer_bos(t), &err);
    if (rc == 0)
        rc = tokenizer_encode(t, text, len, o->special, &ids, &err);
    if (rc < 0) {
        fprintf(stderr, "elliott %s: %s\n", cmd, err.msg);
        token_vec_free(&ids);
        return 1;
    }
    print_ids(&ids);
    if (o->pieces)
        print_pieces(t, &ids);
    token_vec_free(&ids);
    return 0;
}

int cmd_tokenize(int argc, char **argv)
{
    tokenize_options o = {0};
    int prc = parse_options(argc, argv, &o);
    if (prc)
        return prc == 1 ? 0 : 2;

    el_err err = {{0}};
    gguf_file *f = gguf_open(o.model, &err);
    tokenizer *t = f ? tokenizer_load(f, &err) : NULL;
    gguf_close(f);
    if (!t) {
        fprintf(stderr, "elliott %s: %s\n", argv[0], err.msg);
        return 1;
    }
    size_t len = o.text ? strlen(o.text) : 0;
    char *owned = o.text ? NULL : cli_read_input(argv[0], o.text_file, MAX_TEXT_BYTES, &len);
    int rc = 1;
    if (o.text || owned)
        rc = tokenize_and_print(argv[0], t, &o, o.text ? o.text : owned, len);
    cli_input_free(owned, len);
    tokenizer_free(t);
    if (fflush(stdout) != 0 || ferror(stdout))
        rc = 1;
    return rc;
}
