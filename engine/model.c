/* Loading an RWKV-4 model: names (official or Hugging Face), shapes, dtypes, then vectors
 * converted to float32 and matrices pointed at in the mapping. */
#include "model.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mapped_file.h"
#include "progress.h"
#include "tensor_set.h"

enum {
    LAYER_MAX = 4096,
    NAME_CAP = BATON_TENSOR_NAME_MAX + 32,
    MATRIX_ALIGN = 64,
    PAGE_BYTES = 4096,
};

struct baton_model_private {
    baton_tensor_set *set; /* the mapping every aligned matrix points into */
    float *vectors;        /* every converted vector, one block */
    void **copies;         /* aligned copies of misaligned matrices */
    size_t n_copies;
};

/* The shape a tensor must have, in terms of the hyperparameters. */
typedef enum { DIM_C, DIM_F, DIM_V } model_dim;
typedef enum { KIND_VECTOR, KIND_DECAY, KIND_MATRIX } model_kind;

typedef struct {
    const char *official, *hf; /* names after "blocks.N." and "rwkv.blocks.N." */
    model_kind kind;
    size_t field; /* offsetof a float * (vectors) or a baton_matrix in baton_layer */
    model_dim rows, cols;
} layer_tensor;

#define VEC(o, h, f) {o, h, KIND_VECTOR, offsetof(baton_layer, f), DIM_C, DIM_C}
#define MAT(o, h, f, r, c) {o, h, KIND_MATRIX, offsetof(baton_layer, f), r, c}
static const layer_tensor layer_tensors[] = {
    VEC("ln1.weight", "ln1.weight", ln1_w),
    VEC("ln1.bias", "ln1.bias", ln1_b),
    VEC("att.time_mix_k", "attention.time_mix_key", att_time_mix_k),
    VEC("att.time_mix_v", "attention.time_mix_value", att_time_mix_v),
    VEC("att.time_mix_r", "attention.time_mix_receptance", att_time_mix_r),
    VEC("att.time_first", "attention.time_first", att_time_first),
    {"att.time_decay", "attention.time_decay", KIND_DECAY, offsetof(baton_layer, att_time_decay),
     DIM_C, DIM_C},
    MAT("att.key.weight", "attention.key.weight", att_key, DIM_C, DIM_C),
    MAT("att.value.weight", "attention.value.weight", att_value, DIM_C, DIM_C),
    MAT("att.receptance.weight", "attention.receptance.weight", att_receptance, DIM_C, DIM_C),
    MAT("att.output.weight", "attention.output.weight", att_output, DIM_C, DIM_C),
    VEC("ln2.weight", "ln2.weight", ln2_w),
    VEC("ln2.bias", "ln2.bias", ln2_b),
    VEC("ffn.time_mix_k", "feed_forward.time_mix_key", ffn_time_mix_k),
    VEC("ffn.time_mix_r", "feed_forward.time_mix_receptance", ffn_time_mix_r),
    MAT("ffn.key.weight", "feed_forward.key.weight", ffn_key, DIM_F, DIM_C),
    MAT("ffn.receptance.weight", "feed_forward.receptance.weight", ffn_receptance, DIM_C, DIM_C),
    MAT("ffn.value.weight", "feed_forward.value.weight", ffn_value, DIM_C, DIM_F),
};
#undef VEC
#undef MAT
enum { LAYER_TENSORS = sizeof layer_tensors / sizeof layer_tensors[0] };

/* The tensors outside the blocks, and ln0 which only block 0 has. */
typedef struct {
    const char *official, *hf;
    model_kind kind;
    size_t field; /* offsetof in baton_model */
    bool with_embedding; /* loaded with the embedding; else with the head */
} model_tensor;

static const model_tensor model_tensors[] = {
    {"emb.weight", "rwkv.embeddings.weight", KIND_MATRIX, offsetof(baton_model, emb), true},
    {"blocks.0.ln0.weight", "rwkv.blocks.0.pre_ln.weight", KIND_VECTOR, offsetof(baton_model, ln0_w), true},
    {"blocks.0.ln0.bias", "rwkv.blocks.0.pre_ln.bias", KIND_VECTOR, offsetof(baton_model, ln0_b), true},
    {"ln_out.weight", "rwkv.ln_out.weight", KIND_VECTOR, offsetof(baton_model, ln_out_w), false},
    {"ln_out.bias", "rwkv.ln_out.bias", KIND_VECTOR, offsetof(baton_model, ln_out_b), false},
    {"head.weight", "head.weight", KIND_MATRIX, offsetof(baton_model, head), false},
};
enum { MODEL_TENSORS = sizeof model_tensors / sizeof model_tensors[0] };

/* What a load is working on. */
typedef struct {
    baton_model *m;
    const baton_tensor_set *set;
    const char *path;
    bool hf;
    float *next_vector; /* where the next converted vector goes */
    baton_error *err;
} loader;

static void layer_name(const loader *ld, int layer, const layer_tensor *lt, char *buf) {
    if (ld->hf) snprintf(buf, NAME_CAP, "rwkv.blocks.%d.%s", layer, lt->hf);
    else snprintf(buf, NAME_CAP, "blocks.%d.%s", layer, lt->official);
}

static int64_t dim_value(const baton_model *m, model_dim d) {
    return d == DIM_C ? m->n_embd : d == DIM_F ? m->n_ffn : m->n_vocab;
}

static const baton_tensor *find(loader *ld, const char *name, baton_status *st) {
    const baton_tensor *t = baton_tensor_set_find(ld->set, name);
    if (t == NULL) *st = baton_fail(ld->err, BATON_ERR_SHAPE, "%s: %s is missing", ld->path, name);
    return t;
}

static void shape_str(char *buf, size_t cap, const baton_tensor *t) {
    size_t at = (size_t)snprintf(buf, cap, "(");
    for (int d = 0; d < t->ndim && at < cap; d++) {
        at += (size_t)snprintf(buf + at, cap - at, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    }
    if (at < cap) snprintf(buf + at, cap - at, ")");
}

/* A vector of C elements: (C), or (1, C), (1, 1, C) as time_mix is stored. */
static baton_status check_vector(loader *ld, const baton_tensor *t) {
    bool ok = t->ndim >= 1 && t->shape[t->ndim - 1] == ld->m->n_embd;
    for (int d = 0; ok && d + 1 < t->ndim; d++) ok = t->shape[d] == 1;
    if (ok) return BATON_OK;
    char shape[96];
    shape_str(shape, sizeof shape, t);
    return baton_fail(ld->err, BATON_ERR_SHAPE, "%s: %s: shape %s, expected (%d)", ld->path,
                      t->name, shape, ld->m->n_embd);
}

static baton_status check_matrix(loader *ld, const baton_tensor *t, int64_t rows, int64_t cols) {
    if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) {
        char shape[96];
        shape_str(shape, sizeof shape, t);
        return baton_fail(ld->err, BATON_ERR_SHAPE, "%s: %s: shape %s, expected (%lld, %lld)",
                          ld->path, t->name, shape, (long long)rows, (long long)cols);
    }
    if (t->dtype != ld->m->dtype) {
        return baton_fail(ld->err, BATON_ERR_SHAPE, "%s: %s is %s but the other matrices are %s",
                          ld->path, t->name, baton_dtype_name(t->dtype),
                          baton_dtype_name(ld->m->dtype));
    }
    return BATON_OK;
}

/* Reads n_layer from the highest block index; every layer below it is checked later. */
static baton_status count_layers(loader *ld) {
    const char *prefix = ld->hf ? "rwkv.blocks." : "blocks.";
    size_t prefix_len = strlen(prefix);
    long max = -1;
    for (size_t i = 0; i < ld->set->n_tensors; i++) {
        const char *name = ld->set->tensors[i].name;
        if (strncmp(name, prefix, prefix_len) != 0) continue;
        const char *p = name + prefix_len;
        long index = 0;
        int digits = 0;
        for (; *p >= '0' && *p <= '9' && digits < 6; p++, digits++) index = 10 * index + (*p - '0');
        if (digits == 0 || *p != '.') continue;
        if (index >= LAYER_MAX) {
            return baton_fail(ld->err, BATON_ERR_UNSUPPORTED, "%s: %s: more than %d layers",
                              ld->path, name, LAYER_MAX);
        }
        if (index > max) max = index;
    }
    if (max < 0) return baton_fail(ld->err, BATON_ERR_SHAPE, "%s: no %sN tensors", ld->path, prefix);
    ld->m->n_layer = (int)max + 1;
    return BATON_OK;
}

/* n_embd and n_vocab from the embedding, n_ffn from layer 0, the matrix dtype from att.key. */
static baton_status read_hyperparameters(loader *ld) {
    baton_model *m = ld->m;
    baton_status st = count_layers(ld);
    if (st != BATON_OK) return st;
    const baton_tensor *emb = find(ld, ld->hf ? model_tensors[0].hf : model_tensors[0].official, &st);
    if (emb == NULL) return st;
    if (emb->ndim != 2 || emb->shape[0] < 1 || emb->shape[1] < 1 || emb->shape[0] > INT32_MAX ||
        emb->shape[1] > INT32_MAX) {
        char shape[96];
        shape_str(shape, sizeof shape, emb);
        return baton_fail(ld->err, BATON_ERR_SHAPE, "%s: %s: shape %s, expected (n_vocab, n_embd)",
                          ld->path, emb->name, shape);
    }
    m->n_vocab = (int)emb->shape[0];
    m->n_embd = (int)emb->shape[1];
    char name[NAME_CAP];
    const layer_tensor *ffn_key = NULL, *att_key = NULL;
    for (int i = 0; i < LAYER_TENSORS; i++) {
        if (layer_tensors[i].field == offsetof(baton_layer, ffn_key)) ffn_key = &layer_tensors[i];
        if (layer_tensors[i].field == offsetof(baton_layer, att_key)) att_key = &layer_tensors[i];
    }
    assert(ffn_key != NULL && att_key != NULL);
    layer_name(ld, 0, att_key, name);
    const baton_tensor *t = find(ld, name, &st);
    if (t == NULL) return st;
    m->dtype = t->dtype;
    layer_name(ld, 0, ffn_key, name);
    t = find(ld, name, &st);
    if (t == NULL) return st;
    if (t->ndim != 2 || t->shape[0] < 1 || t->shape[0] > INT32_MAX) {
        char shape[96];
        shape_str(shape, sizeof shape, t);
        return baton_fail(ld->err, BATON_ERR_SHAPE, "%s: %s: shape %s, expected (n_ffn, %d)",
                          ld->path, t->name, shape, m->n_embd);
    }
    m->n_ffn = (int)t->shape[0];
    return BATON_OK;
}

/* Converts a checked vector to float32; time_decay becomes w = -exp(time_decay). */
static baton_status load_vector(loader *ld, const baton_tensor *t, model_kind kind, float **out) {
    float *v = ld->next_vector;
    ld->next_vector += ld->m->n_embd;
    baton_convert_to_f32(v, t->data, t->dtype, (size_t)ld->m->n_embd);
    for (int i = 0; i < ld->m->n_embd; i++) {
        if (!isfinite(v[i])) {
            return baton_fail(ld->err, BATON_ERR_FORMAT, "%s: %s: element %d is not finite",
                              ld->path, t->name, i);
        }
        if (kind == KIND_DECAY) {
            float w = -expf(v[i]); /* w = -exp(time_decay) */
            if (!isfinite(w)) {
                return baton_fail(ld->err, BATON_ERR_RANGE,
                                  "%s: %s: element %d (%g) overflows -exp(time_decay)", ld->path,
                                  t->name, i, (double)v[i]);
            }
            v[i] = w;
        }
    }
    *out = v;
    return BATON_OK;
}

/* Points at the matrix in the mapping, or copies it once when it is not aligned there. */
static baton_status load_matrix(loader *ld, const baton_tensor *t, baton_matrix *out) {
    size_t elem = baton_dtype_size(t->dtype);
    out->dtype = t->dtype;
    out->rows = t->shape[0];
    out->cols = t->shape[1];
    out->data = t->data;
    if ((uintptr_t)t->data % elem == 0) return BATON_OK;
    struct baton_model_private *priv = ld->m->priv;
    size_t bytes = (size_t)t->n_elements * elem;
    void *copy = NULL;
    void **copies = realloc(priv->copies, (priv->n_copies + 1) * sizeof *copies);
    if (copies != NULL) priv->copies = copies;
    if (copies == NULL || posix_memalign(&copy, MATRIX_ALIGN, bytes ? bytes : MATRIX_ALIGN) != 0) {
        return baton_fail(ld->err, BATON_ERR_NOMEM, "%s: %s: out of memory for an aligned copy",
                          ld->path, t->name);
    }
    memcpy(copy, t->data, bytes);
    priv->copies[priv->n_copies++] = copy;
    out->data = copy;
    return BATON_OK;
}

static baton_status load_tensor(loader *ld, const char *name, model_kind kind, model_dim rows,
                                model_dim cols, void *field, bool wanted) {
    baton_status st = BATON_OK;
    const baton_tensor *t = find(ld, name, &st);
    if (t == NULL) return st;
    if (kind == KIND_MATRIX) {
        st = check_matrix(ld, t, dim_value(ld->m, rows), dim_value(ld->m, cols));
        if (st == BATON_OK && wanted) st = load_matrix(ld, t, field);
    } else {
        st = check_vector(ld, t);
        if (st == BATON_OK && wanted) st = load_vector(ld, t, kind, field);
    }
    return st;
}

/* Checks every tensor of the file, and converts or points at those of the loaded parts. */
static baton_status load_tensors(loader *ld) {
    baton_model *m = ld->m;
    char name[NAME_CAP];
    for (int i = 0; i < MODEL_TENSORS; i++) {
        const model_tensor *mt = &model_tensors[i];
        bool wanted = mt->with_embedding ? m->has_embedding : m->has_head;
        model_dim rows = mt->kind == KIND_MATRIX ? DIM_V : DIM_C;
        baton_status st = load_tensor(ld, ld->hf ? mt->hf : mt->official, mt->kind, rows, DIM_C,
                                      (char *)m + mt->field, wanted);
        if (st != BATON_OK) return st;
    }
    for (int layer = 0; layer < m->n_layer; layer++) {
        bool wanted = layer >= m->layer_begin && layer < m->layer_end;
        for (int i = 0; i < LAYER_TENSORS; i++) {
            const layer_tensor *lt = &layer_tensors[i];
            layer_name(ld, layer, lt, name);
            baton_status st = load_tensor(ld, name, lt->kind, lt->rows, lt->cols,
                                          (char *)&m->layers[layer] + lt->field, wanted);
            if (st != BATON_OK) return st;
        }
    }
    return BATON_OK;
}

static size_t count_vectors(const baton_model *m) {
    size_t n = 0;
    for (int i = 0; i < MODEL_TENSORS; i++) {
        bool wanted = model_tensors[i].with_embedding ? m->has_embedding : m->has_head;
        if (wanted && model_tensors[i].kind != KIND_MATRIX) n++;
    }
    for (int i = 0; i < LAYER_TENSORS; i++) {
        if (layer_tensors[i].kind != KIND_MATRIX) n += (size_t)(m->layer_end - m->layer_begin);
    }
    return n;
}

static const baton_matrix *layer_matrix(const baton_layer *l, int i) {
    return (const baton_matrix *)((const char *)l + layer_tensors[i].field);
}

/* Every loaded matrix, in file-independent order; calls fn on each. */
static void for_each_matrix(const baton_model *m, void (*fn)(const baton_matrix *, void *), void *ctx) {
    if (m->has_embedding) fn(&m->emb, ctx);
    for (int layer = m->layer_begin; layer < m->layer_end; layer++) {
        for (int i = 0; i < LAYER_TENSORS; i++) {
            if (layer_tensors[i].kind == KIND_MATRIX) fn(layer_matrix(&m->layers[layer], i), ctx);
        }
    }
    if (m->has_head) fn(&m->head, ctx);
}

static uint64_t matrix_bytes(const baton_matrix *mat) {
    return (uint64_t)mat->rows * (uint64_t)mat->cols * baton_dtype_size(mat->dtype);
}

static void add_bytes(const baton_matrix *mat, void *ctx) { *(uint64_t *)ctx += matrix_bytes(mat); }

typedef struct {
    baton_progress progress;
    unsigned sum; /* keeps the reads from being optimized away */
} prefetch_ctx;

/* Reads one byte of every page so that the first step does not wait on the disk. */
static void touch_matrix(const baton_matrix *mat, void *ctx) {
    enum { CHUNK_BYTES = 64 << 20 };
    prefetch_ctx *p = ctx;
    const volatile unsigned char *bytes = mat->data;
    uint64_t n = matrix_bytes(mat);
    for (uint64_t chunk = 0; chunk < n; chunk += CHUNK_BYTES) {
        uint64_t end = n - chunk > CHUNK_BYTES ? chunk + CHUNK_BYTES : n;
        for (uint64_t at = chunk; at < end; at += PAGE_BYTES) p->sum += bytes[at];
        p->sum += bytes[end - 1]; /* the last page when the data does not start on a page */
        baton_progress_add(&p->progress, end - chunk);
    }
}

static void will_need(const baton_matrix *mat, void *ctx) {
    const baton_tensor_set *set = ctx;
    const unsigned char *p = mat->data;
    if (p >= set->base && p < set->base + set->size) {
        baton_mapped_file file = {set->base, set->size};
        baton_mapped_file_will_need(&file, (uint64_t)(p - set->base), matrix_bytes(mat));
    }
}

static void prefetch(const baton_model *m) {
    prefetch_ctx ctx = {.sum = 0};
    for_each_matrix(m, will_need, m->priv->set);
    baton_progress_begin(&ctx.progress, "reading weights", baton_model_weight_bytes(m));
    for_each_matrix(m, touch_matrix, &ctx);
    baton_progress_end(&ctx.progress);
}

static baton_status set_range(baton_model *m, const baton_model_options *opt, const char *path,
                              baton_error *err) {
    m->layer_begin = 0;
    m->layer_end = m->n_layer;
    if (opt != NULL && (opt->layer_begin != 0 || opt->layer_end != 0)) {
        if (opt->layer_begin < 0 || opt->layer_begin >= opt->layer_end ||
            opt->layer_end > m->n_layer) {
            return baton_fail(err, BATON_ERR_ARG, "%s: layers [%d, %d) are not within [0, %d)",
                              path, opt->layer_begin, opt->layer_end, m->n_layer);
        }
        m->layer_begin = opt->layer_begin;
        m->layer_end = opt->layer_end;
    }
    m->has_embedding = m->layer_begin == 0 && !(opt != NULL && opt->skip_embedding);
    m->has_head = m->layer_end == m->n_layer && !(opt != NULL && opt->skip_head);
    return BATON_OK;
}

baton_status baton_model_load(const char *path, const baton_model_options *options,
                              baton_model **out, baton_error *err) {
    *out = NULL;
    baton_model *m = calloc(1, sizeof *m);
    if (m != NULL) m->priv = calloc(1, sizeof *m->priv);
    if (m == NULL || m->priv == NULL) {
        free(m);
        return baton_fail(err, BATON_ERR_NOMEM, "%s: out of memory", path);
    }
    baton_status st = baton_tensor_set_open(path, &m->priv->set, err);
    loader ld = {.m = m, .set = m->priv->set, .path = path, .err = err};
    if (st == BATON_OK) {
        ld.hf = baton_tensor_set_find(ld.set, "rwkv.embeddings.weight") != NULL;
        st = read_hyperparameters(&ld);
    }
    if (st == BATON_OK) st = set_range(m, options, path, err);
    if (st == BATON_OK) {
        size_t floats = count_vectors(m) * (size_t)m->n_embd;
        m->layers = calloc((size_t)m->n_layer, sizeof *m->layers);
        m->priv->vectors = malloc((floats ? floats : 1) * sizeof(float));
        ld.next_vector = m->priv->vectors;
        if (m->layers == NULL || m->priv->vectors == NULL) {
            st = baton_fail(err, BATON_ERR_NOMEM, "%s: out of memory for %zu vector floats", path,
                            floats);
        }
    }
    if (st == BATON_OK) st = load_tensors(&ld);
    if (st != BATON_OK) {
        baton_model_free(m);
        return st;
    }
    if (options != NULL && options->prefetch) prefetch(m);
    *out = m;
    return BATON_OK;
}

void baton_model_free(baton_model *model) {
    if (model == NULL) return;
    struct baton_model_private *priv = model->priv;
    for (size_t i = 0; i < priv->n_copies; i++) free(priv->copies[i]);
    free(priv->copies);
    free(priv->vectors);
    baton_tensor_set_free(priv->set);
    free(priv);
    free(model->layers);
    free(model);
}

uint64_t baton_model_weight_bytes(const baton_model *model) {
    uint64_t bytes = 0;
    for_each_matrix(model, add_bytes, &bytes);
    return bytes;
}
