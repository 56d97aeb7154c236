/* elliott quantize: rewrites a GGUF model with its weight matrices in another type.
 * Norms and other 1-D tensors stay as they are. The K-quant mixes follow llama.cpp's
 * choices (Q4_K_M: Q6_K for the output/tied embedding and for some attn_v and ffn_down
 * layers) so that files compare like for like. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/threadpool.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "kernels/kernels.h"

typedef struct quant_scheme {
    const char *name;
    uint32_t base_type; /* most weight matrices */
    uint32_t file_type; /* general.file_type, llama.cpp's numbering */
    bool k_mix;         /* Q6_K for output and a share of attn_v / ffn_down */
} quant_scheme;

static const quant_scheme schemes[] = {
    {"F32", GGUF_TYPE_F32, 0, false},     {"F16", GGUF_TYPE_F16, 1, false},
    {"BF16", GGUF_TYPE_BF16, 32, false},  {"Q8_0", GGUF_TYPE_Q8_0, 7, false},
    {"Q4_0", GGUF_TYPE_Q4_0, 2, false},   {"Q4_1", GGUF_TYPE_Q4_1, 3, false},
    {"Q5_0", GGUF_TYPE_Q5_0, 8, false},   {"Q5_1", GGUF_TYPE_Q5_1, 9, false},
    {"Q4_K_S", GGUF_TYPE_Q4_K, 14, false}, {"Q4_K_M", GGUF_TYPE_Q4_K, 15, true},
    {"Q4_K", GGUF_TYPE_Q4_K, 15, true},   {"Q5_K_S", GGUF_TYPE_Q5_K, 16, false},
    {"Q5_K_M", GGUF_TYPE_Q5_K, 17, true}, {"Q5_K", GGUF_TYPE_Q5_K, 17, true},
    {"Q6_K", GGUF_TYPE_Q6_K, 18, false},
};

typedef struct tensor_plan {
    const gguf_tensor *src;
    uint32_t type;
} tensor_plan;

typedef struct quantize_job {
    const gguf_file *in;
    tensor_plan *plan;
    uint64_t n_tensors;
    threadpool *pool;
    float **row_scratch; /* one row of floats per thread */
    /* the tensor being filled */
    const tensor_plan *cur;
    void *out;
    int64_t n_rows;
    int failed;
    uint64_t bytes_in, bytes_out;
    bool progress; /* stderr is a terminal: show a progress line */
} quantize_job;

static void usage(FILE *out)
{
    fprintf(out, "usage: elliott quantize [-t THREADS] IN.gguf OUT.gguf TYPE\n\n"
                 "Writes OUT.gguf with IN's metadata and its weight matrices converted to TYPE:\n  ");
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
        fprintf(out, "%s%s", i ? ", " : "", schemes[i].name);
    fprintf(out, "\n\noptions:\n"
                 "  -t, --threads N   threads (default: every CPU)\n"
                 "  -h, --help        this help\n"
                 "\nAs llama.cpp does, a quantized output projection (or tied embedding) becomes Q6_K\n"
                 "(Q8_0 stays Q8_0). Q4_K means Q4_K_M: attn_v and ffn_down also become Q6_K in the\n"
                 "first and last eighth of the layers and every third layer between. Tensors whose rows\n"
                 "do not fit a K-quant block (256) fall back to Q5_0 (Q5_1 for Q5_K, Q8_0 for Q6_K).\n"
                 "1-D tensors (norms, scales) and mixture-of-experts routers are copied unchanged;\n"
                 "expert tensors (3-D) are quantized like any matrix.\n");
}

static const quant_scheme *find_scheme(const char *name)
{
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
        if (!strcasecmp(name, schemes[i].name))
            return &schemes[i];
    return NULL;
}

/* llama.cpp's use_more_bits: the first and last eighth, and every third layer between. */
static bool use_more_bits(int i, int n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static int layer_of(const gguf_str name)
{
    if (name.len < 5 || memcmp(name.ptr, "blk.", 4))
        return -1;
    int v = 0;
    for (uint64_t i = 4; i < name.len && name.ptr[i] >= '0' && name.ptr[i] <= '9'; i++)
        v = v * 10 + (name.ptr[i] - '0');
    return v;
}

static bool name_has(const gguf_str name, const char *part)
{
    size_t n = strlen(part);
    for (uint64_t i = 0; i + n <= name.len; i++)
        if (!memcmp(name.ptr + i, part, n))
            return true;
    return false;
}

static uint32_t fallback_type(uint32_t type)
{
    switch (type) {
    case GGUF_TYPE_Q4_K: return GGUF_TYPE_Q5_0;
    case GGUF_TYPE_Q5_K: return GGUF_TYPE_Q5_1;
    case GGUF_TYPE_Q6_K: return GGUF_TYPE_Q8_0;
    default: return GGUF_TYPE_F16;
    }
}

/* Routers stay as they are (F32 from the converter), as llama.cpp's quantize keeps
 * ffn_gate_inp; so do vectors of any shape. */
static bool keeps_type(const gguf_tensor *t)
{
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 255 ? t->name.len : 255), t->name.ptr);
    enum model_tensor_kind kind = model_tensor_kind_of(name);
    return t->n_dims < 2 || kind == MODEL_TENSOR_ROUTER || kind == MODEL_TENSOR_VECTOR;
}

static uint32_t choose_type(const quant_scheme *s, const gguf_tensor *t, bool has_output, int n_layer)
{
    if (keeps_type(t))
        return t->type;
    uint32_t type = s->base_type;
    bool quantized = type != GGUF_TYPE_F32 && type != GGUF_TYPE_F16 && type != GGUF_TYPE_BF16;
    bool is_output = gguf_str_eq(t->name, "output.weight") ||
                     (!has_output && gguf_str_eq(t->name, "token_embd.weight"));
    int layer = layer_of(t->name);
    if (is_output && quantized && type != GGUF_TYPE_Q8_0)
        type = GGUF_TYPE_Q6_K; /* llama.cpp keeps the output projection at 6 bits or more */
    else if (s->k_mix && layer >= 0 &&
             (name_has(t->name, "attn_v.weight") || name_has(t->name, "ffn_down.weight")) &&
             use_more_bits(layer, n_layer))
        type = GGUF_TYPE_Q6_K;
    const gguf_type_info *info = gguf_type_get(type);
    while (info && t->ne[0] % info->block_size != 0) {
        type = fallback_type(type);
        info = gguf_type_get(type);
    }
    return type;
}

static void convert_rows(void *arg, int ith, int nth)
{
    quantize_job *job = arg;
    const gguf_tensor *src = job->cur->src;
    int64_t cols = src->ne[0];
    size_t in_row = gguf_row_size(src->type, cols), out_row = gguf_row_size(job->cur->type, cols);
    float *row = job->row_scratch[ith];
    for (int64_t r = ith; r < job->n_rows; r += nth) {
        const uint8_t *in = (const uint8_t *)src->data + (size_t)r * in_row;
        uint8_t *out = (uint8_t *)job->out + (size_t)r * out_row;
        if (kernels_dequantize_row(src->type, in, row, cols) ||
            kernels_quantize_row(job->cur->type, row, out, cols))
            job->failed = 1;
    }
}

static int convert_tensor(quantize_job *job, uint64_t index, const char *name, void *buf, uint64_t nbytes,
                          el_err *err);

/* The input cut short or rewritten meanwhile would be read as zeros or other bytes: no
 * output rather than a wrong one (the writer removes its temporary file). */
static int fill_tensor(void *ctx, uint64_t index, const char *name, void *buf, uint64_t nbytes, el_err *err)
{
    quantize_job *job = ctx;
    if (convert_tensor(job, index, name, buf, nbytes, err) < 0)
        return -1;
    return gguf_check_intact(job->in, err);
}

static int convert_tensor(quantize_job *job, uint64_t index, const char *name, void *buf, uint64_t nbytes,
                          el_err *err)
{
    const tensor_plan *p = &job->plan[index];
    job->bytes_in += p->src->nbytes;
    job->bytes_out += nbytes;
    if (p->type == p->src->type) {
        memcpy(buf, p->src->data, nbytes);
        return 0;
    }
    job->cur = p;
    job->out = buf;
    job->n_rows = (int64_t)(p->src->nbytes / gguf_row_size(p->src->type, p->src->ne[0]));
    job->failed = 0;
    threadpool_run(job->pool, convert_rows, job);
    if (job->failed)
        return el_fail(err, "tensor '%s': cannot convert %s to %s", name, gguf_type_get(p->src->type)->name,
                       gguf_type_get(p->type)->name);
    if (job->progress)
        fprintf(stderr, "\r  [%4llu/%4llu] %-40s %-6s -> %-6s", (unsigned long long)index + 1,
                (unsigned long long)job->n_tensors, name, gguf_type_get(p->src->type)->name,
                gguf_type_get(p->type)->name);
    return 0;
}

static int plan_tensors(quantize_job *job, const quant_scheme *s, el_err *err)
{
    const gguf_file *in = job->in;
    int64_t n_layer = 0;
    gguf_str arch;
    if (gguf_get_str(in, "general.architecture", &arch, err) == 0 && arch.len < 64) {
        char key[128];
        snprintf(key, sizeof key, "%.*s.block_count", (int)arch.len, arch.ptr);
        if (gguf_get_i64(in, key, &n_layer, err) < 0)
            return -1;
    }
    bool has_output = gguf_find_tensor(in, "output.weight") != NULL;
    for (uint64_t i = 0; i < job->n_tensors; i++) {
        const gguf_tensor *t = gguf_tensor_at(in, i);
        uint32_t type = choose_type(s, t, has_output, (int)n_layer);
        if (type != t->type && (!kernels_can_dequantize(t->type) || !kernels_can_quantize(type)))
            return el_fail(err, "tensor '%.*s': conversion %s -> %s is not supported", (int)t->name.len,
                           t->name.ptr, gguf_type_get(t->type)->name, gguf_type_get(type)->name);
        job->plan[i] = (tensor_plan){t, type};
    }
    return 0;
}

static int build_writer(const quantize_job *job, const quant_scheme *s, gguf_writer *w, el_err *err)
{
    for (uint64_t i = 0; i < gguf_kv_count(job->in); i++) {
        const gguf_kv *kv = gguf_kv_at(job->in, i);
        if (gguf_writer_copy_kv(w, kv, err))
            return -1;
    }
    if (gguf_writer_set_u32(w, "general.file_type", s->file_type, err) ||
        gguf_writer_set_u32(w, "general.quantization_version", 2, err))
        return -1;
    for (uint64_t i = 0; i < job->n_tensors; i++) {
        const gguf_tensor *t = job->plan[i].src;
        char name[512];
        if (t->name.len >= sizeof name)
            return el_fail(err, "tensor name too long");
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = '\0';
        if (gguf_writer_add_tensor(w, name, job->plan[i].type, t->n_dims, t->ne, err))
            return -1;
    }
    return 0;
}

static int quantize_file(const char *in_path, const char *out_path, const quant_scheme *s, int n_threads,
                         el_err *err)
{
    quantize_job job = {0};
    gguf_writer *w = NULL;
    int rc = -1;
    if (!(job.in = gguf_open(in_path, err)))
        return -1;
    job.n_tensors = gguf_tensor_count(job.in);
    job.progress = isatty(STDERR_FILENO);
    int64_t max_cols = 1;
    for (uint64_t i = 0; i < job.n_tensors; i++)
        if (gguf_tensor_at(job.in, i)->ne[0] > max_cols)
            max_cols = gguf_tensor_at(job.in, i)->ne[0];
    job.plan = calloc(job.n_tensors ? job.n_tensors : 1, sizeof *job.plan);
    job.row_scratch = calloc((size_t)n_threads, sizeof *job.row_scratch);
    if (!job.plan || !job.row_scratch) {
        el_fail(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < n_threads; i++)
        if (!(job.row_scratch[i] = malloc((size_t)max_cols * sizeof(float)))) {
            el_fail(err, "out of memory");
            goto done;
        }
    if (!(job.pool = threadpool_create(n_threads, err)) || plan_tensors(&job, s, err) ||
        !(w = gguf_writer_create(err)) || build_writer(&job, s, w, err))
        goto done;
    if (gguf_writer_write(w, out_path, fill_tensor, &job, err))
        goto done;
    fprintf(stderr, "%selliott quantize: %s: %.1f MiB -> %.1f MiB (%s)\n", job.progress ? "\n" : "", out_path, job.bytes_in / 1048576.0,
            job.bytes_out / 1048576.0, s->name);
    rc = 0;
done:
    gguf_writer_free(w);
    threadpool_free(job.pool);
    if (job.row_scratch)
        for (int i = 0; i < n_threads; i++)
            free(job.row_scratch[i]);
    free(job.row_scratch);
    free(job.plan);
    gguf_close((gguf_file *)job.in);
    return rc;
}

int cmd_quantize(int argc, char **argv)
{
    static const struct option longopts[] = {{"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'},
                                              {0, 0, 0, 0}};
    int n_threads = el_cpu_count(), c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":t:h", longopts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 0;
        }
        if (c != 't')
            return args_option_error("quantize", c, argv);
        if (args_int("quantize", "-t", optarg, 1, 1024, &n_threads))
            return 2;
    }
    if (argc - optind != 3)
        return args_usage_error("quantize", "expected IN.gguf OUT.gguf TYPE");
    const char *in = argv[optind], *out = argv[optind + 1];
    const quant_scheme *s = find_scheme(argv[optind + 2]);
    if (!s)
        return args_usage_error("quantize", "unknown type '%s'", argv[optind + 2]);
    if (!strcmp(in, out))
        return args_usage_error("quantize", "IN and OUT are the same file");
    el_err err = {{0}};
    if (quantize_file(in, out, s, n_threads, &err)) {
        fprintf(stderr, "%selliott quantize: %s\n", isatty(STDERR_FILENO) ? "\n" : "", err.msg);
        return 1;
    }
    return 0;
}
