/* What the served model is, for APIs that describe it (Ollama's /api/tags and
 * /api/show): its file, parameter count, weight type, chat template and the
 * metadata keys a client may show. Everything read is fixed once READY. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/engine_internal.h"
#include "gguf/gguf.h"

/* The type most weight bytes are stored in. */
static void main_type(const gguf_file *f, char *out, size_t cap)
{
    uint64_t bytes[64] = {0};
    uint64_t n = gguf_tensor_count(f);
    for (uint64_t i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (t->type < 64)
            bytes[t->type] += t->nbytes;
    }
    uint32_t best = 0;
    for (uint32_t t = 1; t < 64; t++)
        if (bytes[t] > bytes[best])
            best = t;
    const gguf_type_info *info = gguf_type_get(best);
    snprintf(out, cap, "%s", info ? info->name : "unknown");
}

static uint64_t parameter_count(const gguf_file *f)
{
    uint64_t total = 0, n = gguf_tensor_count(f);
    for (uint64_t i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        uint64_t elems = 1;
        for (uint32_t d = 0; d < t->n_dims; d++)
            elems *= (uint64_t)t->ne[d];
        total += elems;
    }
    return total;
}

static void report(engine_metadata_fn fn, void *cls, const gguf_kv *kv)
{
    engine_meta_value v = {0};
    switch (kv->type) {
    case GGUF_VAL_STRING:
        v = (engine_meta_value){.kind = ENGINE_META_STRING, .str = kv->v.str.ptr, .len = (size_t)kv->v.str.len};
        break;
    case GGUF_VAL_BOOL:
        v = (engine_meta_value){.kind = ENGINE_META_BOOL, .i = (long long)kv->v.u64};
        break;
    case GGUF_VAL_FLOAT32:
    case GGUF_VAL_FLOAT64:
        v = (engine_meta_value){.kind = ENGINE_META_FLOAT, .f = kv->v.f64};
        break;
    case GGUF_VAL_INT8:
    case GGUF_VAL_INT16:
    case GGUF_VAL_INT32:
    case GGUF_VAL_INT64:
        v = (engine_meta_value){.kind = ENGINE_META_INT, .i = (long long)kv->v.i64};
        break;
    default:
        v = (engine_meta_value){.kind = ENGINE_META_INT, .i = (long long)kv->v.u64};
        break;
    }
    fn(cls, kv->key.ptr, (size_t)kv->key.len, &v);
}

int engine_describe(engine *e, engine_description *out, engine_metadata_fn fn, void *cls)
{
    memset(out, 0, sizeof *out);
    if (!engine_hold(e))
        return -1;
    const gguf_file *f = model_gguf(e->m);
    main_type(f, out->weight_type, sizeof out->weight_type);
    out->n_params = parameter_count(f);
    struct stat st;
    if (e->model_path && stat(e->model_path, &st) == 0) {
        out->file_bytes = (uint64_t)st.st_size;
        out->modified = (long long)st.st_mtime;
        out->path = e->model_path;
    } else {
        out->file_bytes = e->cfg.model_size;
    }
    gguf_str tmpl;
    if (gguf_get_str(f, "tokenizer.chat_template", &tmpl, NULL) == 0) {
        out->chat_template = tmpl.ptr;
        out->chat_template_len = (size_t)tmpl.len;
    }
    const char *arch = e->info.arch;
    size_t arch_len = strlen(arch);
    uint64_t n = gguf_kv_count(f);
    for (uint64_t i = 0; fn && i < n; i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        bool general = kv->key.len > 8 && !memcmp(kv->key.ptr, "general.", 8);
        bool of_arch = kv->key.len > arch_len + 1 && !memcmp(kv->key.ptr, arch, arch_len) &&
                       kv->key.ptr[arch_len] == '.';
        if ((general || of_arch) && kv->type != GGUF_VAL_ARRAY)
            report(fn, cls, kv);
    }
    engine_unhold(e);
    return 0;
}
