/* baton_model_load refuses files whose tensors do not make an RWKV-4, with one line naming the
 * file and the tensor: wrong shapes, missing tensors, mixed matrix dtypes, non-finite vectors,
 * time_decay that overflows -exp, absurd layer indices. Also: time_mix as (C) is accepted, a
 * layer range converts only its layers, and a misaligned matrix is copied to aligned memory. */
#include "test_malformed_build.h"

#include "synth.h"

enum { L = 2, C = 8, V = 12, F = 16, MT_MAX = 64 };

typedef struct {
    char name[128];
    const char *dtype;
    int ndim;
    int64_t shape[4];
    float fill;
    bool drop;
} mt;

static void mt_add(mt *list, size_t *n, const char *name, int ndim, int64_t a, int64_t b, int64_t c,
                   float fill) {
    REQUIRE(*n < MT_MAX);
    mt *t = &list[(*n)++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = "F32";
    t->ndim = ndim;
    t->shape[0] = a, t->shape[1] = b, t->shape[2] = c;
    t->fill = fill;
    t->drop = false;
}

/* Every tensor of an L-layer model, official or HF names, all F32. */
static size_t mt_rwkv(mt *list, bool hf) {
    size_t n = 0;
    char name[128];
    mt_add(list, &n, hf ? "rwkv.embeddings.weight" : "emb.weight", 2, V, C, 0, 0.25f);
    mt_add(list, &n, hf ? "rwkv.blocks.0.pre_ln.weight" : "blocks.0.ln0.weight", 1, C, 0, 0, 1.0f);
    mt_add(list, &n, hf ? "rwkv.blocks.0.pre_ln.bias" : "blocks.0.ln0.bias", 1, C, 0, 0, 0.0f);
    static const struct {
        const char *official, *hf;
        int ndim;
        char rows, cols; /* 'C', 'F' */
        float fill;
    } per_layer[] = {
        {"ln1.weight", "ln1.weight", 1, 'C', 0, 1.0f},
        {"ln1.bias", "ln1.bias", 1, 'C', 0, 0.0f},
        {"ln2.weight", "ln2.weight", 1, 'C', 0, 1.0f},
        {"ln2.bias", "ln2.bias", 1, 'C', 0, 0.0f},
        {"att.time_decay", "attention.time_decay", 1, 'C', 0, 0.0f},
        {"att.time_first", "attention.time_first", 1, 'C', 0, 0.5f},
        {"att.time_mix_k", "attention.time_mix_key", 3, 'C', 0, 0.5f},
        {"att.time_mix_v", "attention.time_mix_value", 3, 'C', 0, 0.5f},
        {"att.time_mix_r", "attention.time_mix_receptance", 3, 'C', 0, 0.5f},
        {"att.key.weight", "attention.key.weight", 2, 'C', 'C', 0.1f},
        {"att.value.weight", "attention.value.weight", 2, 'C', 'C', 0.1f},
        {"att.receptance.weight", "attention.receptance.weight", 2, 'C', 'C', 0.1f},
        {"att.output.weight", "attention.output.weight", 2, 'C', 'C', 0.1f},
        {"ffn.time_mix_k", "feed_forward.time_mix_key", 3, 'C', 0, 0.5f},
        {"ffn.time_mix_r", "feed_forward.time_mix_receptance", 3, 'C', 0, 0.5f},
        {"ffn.key.weight", "feed_forward.key.weight", 2, 'F', 'C', 0.1f},
        {"ffn.receptance.weight", "feed_forward.receptance.weight", 2, 'C', 'C', 0.1f},
        {"ffn.value.weight", "feed_forward.value.weight", 2, 'C', 'F', 0.1f},
    };
    for (int l = 0; l < L; l++) {
        for (size_t i = 0; i < sizeof per_layer / sizeof per_layer[0]; i++) {
            if (hf) snprintf(name, sizeof name, "rwkv.blocks.%d.%s", l, per_layer[i].hf);
            else snprintf(name, sizeof name, "blocks.%d.%s", l, per_layer[i].official);
            int64_t r = per_layer[i].rows == 'F' ? F : C, c = per_layer[i].cols == 'F' ? F : C;
            if (per_layer[i].ndim == 1) mt_add(list, &n, name, 1, C, 0, 0, per_layer[i].fill);
            else if (per_layer[i].ndim == 3) mt_add(list, &n, name, 3, 1, 1, C, per_layer[i].fill);
            else mt_add(list, &n, name, 2, r, c, 0, per_layer[i].fill);
        }
    }
    mt_add(list, &n, hf ? "rwkv.ln_out.weight" : "ln_out.weight", 1, C, 0, 0, 1.0f);
    mt_add(list, &n, hf ? "rwkv.ln_out.bias" : "ln_out.bias", 1, C, 0, 0, 0.0f);
    mt_add(list, &n, "head.weight", 2, V, C, 0, 0.2f);
    return n;
}

static mt *mt_find(mt *list, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i].name, name) == 0) return &list[i];
    }
    REQUIRE(!"tensor not in the list");
    return NULL;
}

/* safetensors with the header padded by pad spaces (an odd pad misaligns every tensor). */
static void mt_write(const mt *list, size_t n, const char *path, int pad) {
    mbuf json = {0}, data = {0};
    mb_str(&json, "{");
    for (size_t i = 0; i < n; i++) {
        const mt *t = &list[i];
        if (t->drop) continue;
        uint64_t count = 1;
        char text[512];
        int at = snprintf(text, sizeof text, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", json.len > 1 ? "," : "",
                          t->name, t->dtype);
        for (int d = 0; d < t->ndim; d++) {
            at += snprintf(text + at, sizeof text - (size_t)at, d ? ",%lld" : "%lld", (long long)t->shape[d]);
            count *= (uint64_t)t->shape[d];
        }
        size_t begin = data.len;
        for (uint64_t k = 0; k < count; k++) {
            if (strcmp(t->dtype, "F32") == 0) mb_put(&data, &t->fill, 4);
            else if (strcmp(t->dtype, "F16") == 0) mb_le(&data, baton_f32_to_f16(t->fill), 2);
            else mb_le(&data, baton_f32_to_bf16(t->fill), 2);
        }
        snprintf(text + at, sizeof text - (size_t)at, "],\"data_offsets\":[%zu,%zu]}", begin, data.len);
        mb_str(&json, text);
    }
    mb_str(&json, "}");
    for (int i = 0; i < pad; i++) mb_str(&json, " ");
    mbuf file = {0};
    mb_le(&file, json.len, 8);
    mb_put(&file, json.bytes, json.len);
    mb_put(&file, data.bytes, data.len);
    mb_write_file(&file, path);
    free(json.bytes);
    free(data.bytes);
    free(file.bytes);
}

static char path[512];

static void expect_load_fails_at(int line, const mt *list, size_t n, baton_status status, const char *want) {
    mt_write(list, n, path, 0);
    baton_model *m = (baton_model *)1;
    baton_error err = {0};
    baton_status st = baton_model_load(path, NULL, &m, &err);
    if (st == BATON_OK || st != status || m != NULL || strncmp(err.msg, path, strlen(path)) != 0 ||
        strstr(err.msg, want) == NULL || strchr(err.msg, '\n') != NULL) {
        fprintf(stderr, "%s:%d: status '%s', message '%s' (wanted '%s': '%s')\n", __FILE__, line,
                baton_status_str(st), err.msg, baton_status_str(status), want);
        check_failures++;
        if (st == BATON_OK) baton_model_free(m);
    }
}
#define EXPECT_LOAD_FAILS(list, n, status, want) expect_load_fails_at(__LINE__, list, n, status, want)

static baton_model *load_ok(const mt *list, size_t n, int pad, const baton_model_options *opt) {
    mt_write(list, n, path, pad);
    baton_model *m = NULL;
    baton_error err = {0};
    CHECK_MSG(baton_model_load(path, opt, &m, &err) == BATON_OK, "%s", err.msg);
    return m;
}

int main(void) {
    cli_tmp(path, sizeof path, "m.safetensors");
    mt list[MT_MAX];
    size_t n = mt_rwkv(list, false);

    baton_model *m = load_ok(list, n, 0, NULL);
    if (m != NULL) {
        CHECK(m->n_layer == L && m->n_embd == C && m->n_vocab == V && m->n_ffn == F && m->dtype == BATON_F32);
        CHECK(m->layers[1].att_time_decay[3] == -1.0f); /* -exp(0) */
        CHECK(m->layers[1].att_time_first[3] == 0.5f);
        baton_model_free(m);
    }
    n = mt_rwkv(list, true);
    m = load_ok(list, n, 0, NULL);
    if (m != NULL) CHECK(m->n_layer == L && ((const float *)m->layers[1].ffn_value.data)[0] == 0.1f);
    baton_model_free(m);

    /* Misaligned matrices (the data section starts at an odd offset) are copied, aligned. */
    n = mt_rwkv(list, false);
    m = load_ok(list, n, 1, NULL);
    if (m != NULL) {
        const baton_matrix *w = &m->layers[1].ffn_key;
        CHECK((uintptr_t)w->data % 4 == 0 && (uintptr_t)m->head.data % 4 == 0);
        CHECK(((const float *)w->data)[F * C - 1] == 0.1f && ((const float *)m->head.data)[0] == 0.2f);
        baton_model_free(m);
    }

    /* time_mix stored as (C), and (1, C), is accepted. */
    n = mt_rwkv(list, false);
    mt *t = mt_find(list, n, "blocks.0.att.time_mix_k");
    t->ndim = 1, t->shape[0] = C;
    t = mt_find(list, n, "blocks.1.ffn.time_mix_r");
    t->ndim = 2, t->shape[0] = 1, t->shape[1] = C;
    m = load_ok(list, n, 0, NULL);
    baton_model_free(m);

    /* Only the loaded layers are converted: a broken vector elsewhere does not matter. */
    n = mt_rwkv(list, false);
    mt_find(list, n, "blocks.0.ln1.weight")->fill = NAN;
    baton_model_options second = {.layer_begin = 1, .layer_end = 2};
    m = load_ok(list, n, 0, &second);
    if (m != NULL) CHECK(m->layers[0].ln1_w == NULL && m->layers[1].ln1_w[0] == 1.0f);
    baton_model_free(m);

    char want[256];
    n = mt_rwkv(list, false);
    t = mt_find(list, n, "blocks.1.att.key.weight");
    t->shape[1] = C - 1;
    snprintf(want, sizeof want, "m.safetensors: blocks.1.att.key.weight: shape (%d, %d), expected (%d, %d)",
             C, C - 1, C, C);
    EXPECT_LOAD_FAILS(list, n, BATON_ERR_SHAPE, want);

    n = mt_rwkv(list, false);
    mt_find(list, n, "head.weight")->drop = true;
    EXPECT_LOAD_FAILS(list, n, BATON_ERR_SHAPE, "m.safetensors: head.weight is missing");

    n = mt_rwkv(list, false);
    mt_find(list, n, "blocks.1.ffn.key.weight")->drop = true;
    EXPECT_LOAD_FAILS(list, n, BATON_ERR_SHAPE, "blocks.1.ffn.key.weight is missing");

    n = mt_rwkv(list, false);
    mt_find(list, n, "head.weight")->dtype = "F16";
    EXPECT_LOAD_FAILS(list, n, BATON_ERR_SHAPE, "head.weight is fp16 but the other matrices are fp32");

    n = mt_rwkv(list, false);
    mt_find(list, n, "blocks.1.ln2.bias")->fill = NAN;
    EXPECT_LOAD_FAILS(list, n, BATON_ERR_FORMAT, "blocks.1.ln2.bias: element 0 is not finite");

    n = mt_rwkv(list, false);
    mt_find(list, n, "ln_out.weight")->fill = INFINITY;
    EXPECT_LOAD_FAILS(list, n, BATON_ERR_FORMAT, "ln_out.weight: element 0 is not finite");

    n = mt_rwkv(list, false);
    mt_find(list, n, "blocks.0.att.time_decay")->fill = 100.0f;
    EXPECT_LOAD_FAILS(list, n, BATON_ERR_RANGE, "blocks.0.att.time_decay: element 0 (100) overflows");

    n = mt_rwkv(list, false);
    t = mt_find(list, n, "blocks.0.ln1.bias");
    t->ndim = 2, t->shape[0] = 2, t->shape[1] = C / 2;
    snprintf(want, sizeof want, "blocks.0.ln1.bias: shape (2, %d), expected (%d)", C / 2, C);
    EXPECT_LOAD_FAILS(list, n, BATON_ERR_SHAPE, want);

    n = mt_rwkv(list, false);
    t = mt_find(list, n, "blocks.0.ffn.key.weight");
    t->shape[1] = C + 1;
    snprintf(want, sizeof want, "blocks.0.ffn.key.weight: shape (%d, %d), expected (%d, %d)", F, C + 1, F, C);
    EXPECT_LOAD_FAILS(list, n, BATON_ERR_SHAPE, want);

    n = mt_rwkv(list, false);
    t = mt_find(list, n, "emb.weight");
    t->ndim = 3, t->shape[2] = 1;
    EXPECT_LOAD_FAILS(list, n, BATON_ERR_SHAPE, "emb.weight: shape (12, 8, 1), expected (n_vocab, n_embd)");

    n = mt_rwkv(list, false);
    mt_add(list, &n, "blocks.5000.ln1.weight", 1, C, 0, 0, 1.0f);
    EXPECT_LOAD_FAILS(list, n, BATON_ERR_UNSUPPORTED, "more than 4096 layers");

    n = mt_rwkv(list, false);
    mt_add(list, &n, "blocks.3.ln1.weight", 1, C, 0, 0, 1.0f); /* layer 2 is absent */
    EXPECT_LOAD_FAILS(list, n, BATON_ERR_SHAPE, "blocks.2.ln1.weight is missing");

    n = mt_rwkv(list, false);
    for (size_t i = 0; i < n; i++) list[i].drop = strncmp(list[i].name, "blocks.", 7) == 0;
    EXPECT_LOAD_FAILS(list, n, BATON_ERR_SHAPE, "no blocks.N tensors");

    n = mt_rwkv(list, true);
    snprintf(mt_find(list, n, "rwkv.blocks.0.attention.key.weight")->name, 128, "blocks.0.att.key.weight");
    EXPECT_LOAD_FAILS(list, n, BATON_ERR_SHAPE, "rwkv.blocks.0.attention.key.weight is missing");

    n = mt_rwkv(list, false);
    mt_find(list, n, "emb.weight")->drop = true;
    EXPECT_LOAD_FAILS(list, n, BATON_ERR_SHAPE, "emb.weight is missing");

    /* A .pth cut in half, through the file path. */
    char pth[512];
    cli_tmp(pth, sizeof pth, "half.pth");
    baton_synth_options o = {.n_layer = 1, .n_embd = 8, .n_vocab = 9, .dtype = BATON_F16, .seed = 2};
    REQUIRE(baton_synth_write(&o, pth, NULL) == BATON_OK);
    mbuf whole = {0};
    whole.bytes = test_read_file(pth, &whole.len);
    REQUIRE(whole.bytes != NULL);
    whole.len /= 2;
    mb_write_file(&whole, pth);
    baton_error err = {0};
    m = (baton_model *)1;
    CHECK(baton_model_load(pth, NULL, &m, &err) == BATON_ERR_FORMAT && m == NULL);
    CHECK_MSG(strncmp(err.msg, pth, strlen(pth)) == 0, "%s", err.msg);
    free(whole.bytes);
    unlink(pth);
    unlink(path);
    return test_result();
}
