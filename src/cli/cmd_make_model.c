/* elliott make-model: writes a random-weight model at a real shape (for tests and
 * benchmarks); the work is model_write_random's. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "gguf/gguf.h"
#include "model/model.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: elliott make-model --arch ARCH --shape SHAPE --type TYPE [--vocab FROM.gguf | --n-vocab N]\n"
                 "                          [--code-vocab] [--random] [--seed S] [--sliding-window N] OUT.gguf\n\n"
                 "Writes a model with random weights (norms F32, weights of TYPE) at a real shape, with\n"
                 "the tokenizer copied from FROM.gguf. Same seed, same file.\n\n"
                 "options:\n"
                 "      --arch ARCH          llama, gemma, gemma2, gemma3, gemma3n, gemma4 or gemma-embedding\n"
                 "                           (the last three take their own shapes, and only those)\n"
                 "      --shape SHAPE        one of:");
    for (int i = 0; model_shape_name(i); i++)
        fprintf(out, " %s", model_shape_name(i));
    fprintf(out, "\n"
                 "      --type TYPE          f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k .. q6_k\n"
                 "      --vocab FROM.gguf    tokenizer source (default, from the repository root:\n"
                 "                           tests/data/vocab-gemma3.gguf for gemma3, gemma3n, gemma4 and\n"
                 "                           gemma-embedding, tests/data/vocab-gemma.gguf for gemma/gemma2,\n"
                 "                           models/stories260K.gguf for llama)\n"
                 "      --n-vocab N          no tokenizer; a vocabulary of N tokens (small test models)\n"
                 "      --code-vocab         CodeGemma's vocabulary: the Gemma vocabulary's <unused60>..<unused63>\n"
                 "                           renamed to the fill-in-the-middle markers and <|file_separator|>\n"
                 "      --random             random weights (the only kind; accepted for clarity)\n"
                 "      --seed S             random seed (default 1)\n"
                 "      --sliding-window N   gemma2/gemma3 attention window (default: the shape's)\n"
                 "  -h, --help               this help\n");
}

/* The repository's own vocabularies, so that a checkout can regenerate its test
 * models from its root with no other files. */
static const char *default_vocab(enum model_arch arch)
{
    return arch == MODEL_ARCH_LLAMA                               ? "models/stories260K.gguf"
           : arch == MODEL_ARCH_GEMMA || arch == MODEL_ARCH_GEMMA2 ? "tests/data/vocab-gemma.gguf"
                                                                   : "tests/data/vocab-gemma3.gguf";
}

typedef struct make_args {
    model_random_options opt;
    const char *arch, *type, *vocab, *out;
    bool have_seed;
} make_args;

static int parse(int argc, char **argv, make_args *a)
{
    static const struct option options[] = {
        {"arch", required_argument, NULL, 'a'},    {"shape", required_argument, NULL, 's'},
        {"type", required_argument, NULL, 'y'},    {"vocab", required_argument, NULL, 'v'},
        {"n-vocab", required_argument, NULL, 'n'}, {"random", no_argument, NULL, 'r'},
        {"seed", required_argument, NULL, 'S'},    {"sliding-window", required_argument, NULL, 'w'},
        {"code-vocab", no_argument, NULL, 'C'},    {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, ":h", options, NULL)) != -1;) {
        switch (c) {
        case 'a': a->arch = optarg; break;
        case 's': a->opt.shape = optarg; break;
        case 'y': a->type = optarg; break;
        case 'v': a->vocab = optarg; break;
        case 'C': a->opt.code_vocab = true; break;
        case 'n':
            if (args_int("make-model", "--n-vocab", optarg, 1, 1 << 22, &a->opt.n_vocab) < 0)
                return 2;
            break;
        case 'r': break;
        case 'S':
            if (args_u64("make-model", "--seed", optarg, &a->opt.seed) < 0)
                return 2;
            break;
        case 'w':
            if (args_int("make-model", "--sliding-window", optarg, 1, 1 << 24, &a->opt.sliding_window) < 0)
                return 2;
            break;
        case 'h': usage(stdout); return 0;
        default: return args_option_error("make-model", c, argv);
        }
    }
    if (optind != argc - 1)
        return args_usage_error("make-model", "exactly one output file is required");
    a->out = argv[optind];
    if (!a->arch || !a->opt.shape || !a->type)
        return args_usage_error("make-model", "--arch, --shape and --type are required");
    int arch = model_arch_from_name(a->arch, strlen(a->arch));
    if (arch < 0)
        return args_usage_error("make-model", "--arch: unknown architecture '%s'", a->arch);
    a->opt.arch = (enum model_arch)arch;
    bool known_shape = false;
    for (int i = 0; model_shape_name(i); i++)
        known_shape |= !strcmp(model_shape_name(i), a->opt.shape);
    if (!known_shape)
        return args_usage_error("make-model", "--shape: unknown shape '%s' (see --help)", a->opt.shape);
    int type = gguf_type_from_name(a->type);
    if (type < 0)
        return args_usage_error("make-model", "--type: unknown type '%s'", a->type);
    a->opt.type = (uint32_t)type;
    if (a->vocab && a->opt.n_vocab)
        return args_usage_error("make-model", "--vocab and --n-vocab exclude each other");
    if (a->opt.code_vocab && a->opt.n_vocab)
        return args_usage_error("make-model", "--code-vocab renames tokens of a vocabulary: not with --n-vocab");
    return -1;
}

int cmd_make_model(int argc, char **argv)
{
    make_args a = {.opt = {.seed = 1}};
    int rc = parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    struct stat st;
    if (stat(a.out, &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "elliott make-model: %s is a directory; name the file to write\n", a.out);
        return 1;
    }
    if (!a.opt.n_vocab) {
        a.opt.vocab_path = a.vocab ? a.vocab : default_vocab(a.opt.arch);
        if (access(a.opt.vocab_path, R_OK) != 0) {
            fprintf(stderr, "elliott make-model: vocabulary %s is not readable (give --vocab FROM.gguf, or --n-vocab N)\n",
                    a.opt.vocab_path);
            return 1;
        }
    }
    el_err err = {{0}};
    if (model_write_random(a.out, &a.opt, &err) < 0) {
        fprintf(stderr, "elliott make-model: %s\n", err.msg);
        return 1;
    }
    return 0;
}
