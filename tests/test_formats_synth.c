/* baton_synth_write round trips: both formats, every dtype, official and HF names, zero matrices;
 * the same seed gives the same bytes and the same values in either format; the .pth is a zip whose
 * CRCs and 64-byte alignment are right. */
#include "check.h"
#include "cli.h"
#include "model.h"
#include "synth.h"
#include "tensor_set.h"

enum { L = 2, C = 16, V = 40, F = 48, N_TENSORS = 18 * L + 6 };

static const char *tmp_path(char *buf, size_t cap, const char *name) { return cli_tmp(buf, cap, name); }

static void write_model(const char *path, baton_dtype dtype, uint64_t seed, bool hf, bool zero) {
    baton_synth_options o = {.n_layer = L, .n_embd = C, .n_vocab = V, .n_ffn = F, .dtype = dtype,
                             .seed = seed, .hf_names = hf, .zero_matrices = zero};
    baton_error err = {0};
    baton_status st = baton_synth_write(&o, path, &err);
    CHECK_MSG(st == BATON_OK, "%s", err.msg);
    REQUIRE(st == BATON_OK);
}

static baton_tensor_set *open_set(const char *path) {
    baton_tensor_set *set = NULL;
    baton_error err = {0};
    CHECK_MSG(baton_tensor_set_open(path, &set, &err) == BATON_OK, "%s", err.msg);
    REQUIRE(set != NULL);
    return set;
}

static bool same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    void *pa = test_read_file(a, &na), *pb = test_read_file(b, &nb);
    bool same = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return same;
}

/* Bit by bit, independent of the writer's table-driven CRC. */
static uint32_t crc32_slow(const unsigned char *p, uint64_t n) {
    uint32_t r = 0xffffffffu;
    for (uint64_t i = 0; i < n; i++) {
        r ^= p[i];
        for (int k = 0; k < 8; k++) r = r & 1 ? (r >> 1) ^ 0xedb88320u : r >> 1;
    }
    return ~r;
}

static uint32_t le(const unsigned char *p, int n) {
    uint32_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Walks the central directory of a small archive: every CRC matches, every data start is
 * 64-aligned, and the names are <stem>/data.pkl, <stem>/data/<k>, <stem>/version. */
static void check_zip(const char *path, const char *stem) {
    size_t n = 0;
    unsigned char *z = test_read_file(path, &n);
    REQUIRE(z != NULL && n > 22);
    const unsigned char *eocd = z + n - 22;
    REQUIRE(le(eocd, 4) == 0x06054b50);
    CHECK(le(z + n - 42, 4) == 0x07064b50); /* torch always writes the ZIP64 locator */
    uint32_t count = le(eocd + 10, 2), at = le(eocd + 16, 4);
    CHECK(count == N_TENSORS + 2);
    int pickles = 0, versions = 0;
    for (uint32_t i = 0; i < count; i++) {
        const unsigned char *c = z + at;
        REQUIRE(at + 46 <= n && le(c, 4) == 0x02014b50);
        uint32_t crc = le(c + 16, 4), size = le(c + 24, 4), name_len = le(c + 28, 2);
        uint32_t local = le(c + 42, 4);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)name_len, (const char *)c + 46);
        const unsigned char *h = z + local;
        uint32_t data = local + 30 + le(h + 26, 2) + le(h + 28, 2);
        REQUIRE(data + size <= n);
        CHECK_MSG(crc32_slow(z + data, size) == crc, "%s: CRC", name);
        CHECK_MSG(data % 64 == 0, "%s at %u", name, data);
        CHECK_MSG(strncmp(name, stem, strlen(stem)) == 0 && name[strlen(stem)] == '/', "%s", name);
        const char *rest = name + strlen(stem) + 1;
        pickles += strcmp(rest, "data.pkl") == 0;
        versions += strcmp(rest, "version") == 0 && size == 2 && memcmp(z + data, "3\n", 2) == 0;
        at += 46 + name_len + le(c + 30, 2) + le(c + 32, 2);
    }
    CHECK(pickles == 1 && versions == 1);
    free(z);
}

static float value(const baton_tensor *t, size_t i) { return baton_load_f32(t->data, t->dtype, i); }

/* Values drawn where the header says. */
static void check_ranges(const baton_tensor_set *set) {
    for (size_t i = 0; i < set->n_tensors; i++) {
        const baton_tensor *t = &set->tensors[i];
        float lo = -1e9f, hi = 1e9f;
        if (strstr(t->name, "time_mix")) lo = 0.0f, hi = 1.0f;
        else if (strstr(t->name, "time_decay")) lo = -5.01f, hi = 3.01f;
        else if (strstr(t->name, "time_first")) lo = -1.01f, hi = 1.01f;
        else if (strstr(t->name, ".weight") && t->ndim == 1) lo = 0.69f, hi = 1.31f;
        else if (strstr(t->name, ".bias")) lo = -0.21f, hi = 0.21f;
        else if (strcmp(t->name, "emb.weight") == 0) lo = -1.74f, hi = 1.74f; /* unit variance */
        else if (t->ndim == 2) hi = 3.01f * sqrtf(3.0f / (float)t->shape[1]), lo = -hi;
        double sum = 0;
        for (size_t j = 0; j < t->n_elements; j++) {
            float x = value(t, j);
            CHECK_MSG(x >= lo && x <= hi, "%s[%zu] = %g outside [%g, %g]", t->name, j, x, lo, hi);
            sum += fabs(x);
        }
        CHECK_MSG(sum > 0, "%s is all zeros", t->name);
    }
}

static void check_layout(const baton_tensor_set *set, baton_dtype dtype, bool hf) {
    CHECK(set->n_tensors == N_TENSORS);
    const char *emb = hf ? "rwkv.embeddings.weight" : "emb.weight";
    const char *mix = hf ? "rwkv.blocks.1.attention.time_mix_key" : "blocks.1.att.time_mix_k";
    const char *fv = hf ? "rwkv.blocks.1.feed_forward.value.weight" : "blocks.1.ffn.value.weight";
    CHECK(strcmp(set->tensors[0].name, emb) == 0);
    CHECK(strcmp(set->tensors[N_TENSORS - 1].name, "head.weight") == 0);
    const baton_tensor *t = baton_tensor_set_find(set, mix);
    REQUIRE(t != NULL);
    CHECK(t->ndim == 3 && t->shape[0] == 1 && t->shape[1] == 1 && t->shape[2] == C);
    t = baton_tensor_set_find(set, fv);
    REQUIRE(t != NULL);
    CHECK(t->ndim == 2 && t->shape[0] == C && t->shape[1] == F && t->dtype == dtype);
    for (size_t i = 0; i < set->n_tensors; i++) CHECK(set->tensors[i].dtype == dtype);
}

int main(void) {
    static const baton_dtype dtypes[] = {BATON_F32, BATON_F16, BATON_BF16};
    char pth[3][512], st[3][512], again[512], other[512], hf[512], hf_pth[512], zero[512];
    const char *names[3] = {"m32", "m16", "mb16"};
    for (int d = 0; d < 3; d++) {
        char name[64];
        snprintf(name, sizeof name, "%s.pth", names[d]);
        tmp_path(pth[d], sizeof pth[d], name);
        snprintf(name, sizeof name, "%s.safetensors", names[d]);
        tmp_path(st[d], sizeof st[d], name);
        write_model(pth[d], dtypes[d], 7, false, false);
        write_model(st[d], dtypes[d], 7, false, false);
    }

    /* Deterministic: the same seed, the same bytes; another seed, other bytes. */
    tmp_path(again, sizeof again, "again.pth");
    tmp_path(other, sizeof other, "other.pth");
    write_model(again, BATON_F32, 7, false, false);
    write_model(other, BATON_F32, 8, false, false);
    /* The archive's folder is named after the file, so compare like with like. */
    char again32[512];
    tmp_path(again32, sizeof again32, "sub");
    mkdir(again32, 0755);
    strcat(again32, strrchr(pth[0], '/'));
    write_model(again32, BATON_F32, 7, false, false);
    CHECK(same_file(pth[0], again32));
    CHECK(!same_file(again, other));

    baton_tensor_set *ref = open_set(pth[0]);
    check_ranges(ref);
    for (int d = 0; d < 3; d++) {
        char stem[64];
        snprintf(stem, sizeof stem, "%d-%s", (int)getpid(), names[d]);
        check_zip(pth[d], stem);
        baton_tensor_set *a = open_set(pth[d]), *b = open_set(st[d]);
        CHECK(a->format == BATON_FORMAT_PTH && b->format == BATON_FORMAT_SAFETENSORS);
        check_layout(a, dtypes[d], false);
        check_layout(b, dtypes[d], false);
        for (size_t i = 0; i < a->n_tensors; i++) {
            const baton_tensor *x = &a->tensors[i], *y = &b->tensors[i], *r = &ref->tensors[i];
            CHECK(strcmp(x->name, y->name) == 0 && x->ndim == y->ndim);
            CHECK(memcmp(x->shape, y->shape, sizeof x->shape) == 0);
            /* Both formats hold the same bytes, and the narrow dtypes are the fp32 values rounded. */
            CHECK_MSG(memcmp(x->data, y->data, x->n_elements * baton_dtype_size(x->dtype)) == 0, "%s", x->name);
            size_t bad = 0;
            for (size_t j = 0; j < x->n_elements; j++) {
                float f = value(r, j);
                float want = dtypes[d] == BATON_F16    ? baton_f16_to_f32(baton_f32_to_f16(f))
                             : dtypes[d] == BATON_BF16 ? baton_bf16_to_f32(baton_f32_to_bf16(f))
                                                       : f;
                bad += value(x, j) != want;
            }
            CHECK_MSG(bad == 0, "%s: %zu values differ from the rounded fp32 ones", x->name, bad);
            CHECK(y->file_offset % 8 == 0);
        }
        baton_tensor_set_free(a);
        baton_tensor_set_free(b);
    }

    /* Hugging Face names load into the same model as the official ones. */
    tmp_path(hf, sizeof hf, "hf.safetensors");
    tmp_path(hf_pth, sizeof hf_pth, "hf.pth");
    write_model(hf, BATON_BF16, 7, true, false);
    write_model(hf_pth, BATON_BF16, 7, true, false);
    baton_tensor_set *h = open_set(hf);
    check_layout(h, BATON_BF16, true);
    baton_tensor_set_free(h);
    baton_model *mo = NULL, *mh = NULL, *mp = NULL;
    baton_error err = {0};
    CHECK_MSG(baton_model_load(pth[2], NULL, &mo, &err) == BATON_OK, "%s", err.msg);
    CHECK_MSG(baton_model_load(hf, NULL, &mh, &err) == BATON_OK, "%s", err.msg);
    CHECK_MSG(baton_model_load(hf_pth, NULL, &mp, &err) == BATON_OK, "%s", err.msg);
    REQUIRE(mo && mh && mp);
    CHECK(mh->n_layer == L && mh->n_embd == C && mh->n_vocab == V && mh->n_ffn == F);
    for (int l = 0; l < L; l++) {
        const baton_layer *a = &mo->layers[l], *b = &mh->layers[l], *c = &mp->layers[l];
        CHECK(memcmp(a->att_time_decay, b->att_time_decay, C * sizeof(float)) == 0);
        CHECK(memcmp(a->ffn_time_mix_r, b->ffn_time_mix_r, C * sizeof(float)) == 0);
        CHECK(memcmp(a->ln2_b, c->ln2_b, C * sizeof(float)) == 0);
        CHECK(memcmp(a->ffn_value.data, b->ffn_value.data, (size_t)C * F * 2) == 0);
        CHECK(memcmp(a->att_output.data, c->att_output.data, (size_t)C * C * 2) == 0);
        for (int i = 0; i < C; i++) CHECK(a->att_time_decay[i] <= -expf(-5.01f));
    }
    CHECK(memcmp(mo->ln0_w, mh->ln0_w, C * sizeof(float)) == 0);
    CHECK(memcmp(mo->emb.data, mh->emb.data, (size_t)V * C * 2) == 0);
    CHECK(memcmp(mo->head.data, mp->head.data, (size_t)V * C * 2) == 0);
    baton_model_free(mh);
    baton_model_free(mp);

    /* Zero matrices: holes, but the vectors are those of the same seed. */
    tmp_path(zero, sizeof zero, "zero.pth");
    write_model(zero, BATON_BF16, 7, false, true);
    baton_model *mz = NULL;
    CHECK_MSG(baton_model_load(zero, NULL, &mz, &err) == BATON_OK, "%s", err.msg);
    REQUIRE(mz != NULL);
    const uint16_t *w = mz->layers[1].ffn_key.data;
    size_t nonzero = 0;
    for (size_t i = 0; i < (size_t)F * C; i++) nonzero += w[i] != 0;
    CHECK(nonzero == 0);
    CHECK(memcmp(mz->layers[1].ln1_w, mo->layers[1].ln1_w, C * sizeof(float)) == 0);
    baton_model_free(mz);
    baton_model_free(mo);

    /* n_ffn 0 means 4 C; out-of-range shapes and unknown extensions are argument errors. */
    baton_synth_options o = {.n_layer = 1, .n_embd = 8, .n_vocab = 5, .dtype = BATON_F32};
    char def[512];
    tmp_path(def, sizeof def, "def.safetensors");
    CHECK(baton_synth_write(&o, def, &err) == BATON_OK);
    CHECK_MSG(baton_model_load(def, NULL, &mo, &err) == BATON_OK, "%s", err.msg);
    if (mo) CHECK(mo->n_ffn == 32);
    baton_model_free(mo);
    CHECK(baton_synth_write(&o, "x.bin", &err) == BATON_ERR_ARG);
    baton_synth_options bad = o;
    bad.n_layer = 0;
    CHECK(baton_synth_write(&bad, def, &err) == BATON_ERR_ARG);
    bad = o;
    bad.n_embd = BATON_SYNTH_EMBD_MAX + 1;
    CHECK(baton_synth_write(&bad, def, &err) == BATON_ERR_ARG);
    CHECK(baton_synth_write(&o, "/nonexistent-dir/m.pth", &err) == BATON_ERR_IO);
    CHECK(strstr(err.msg, "/nonexistent-dir/m.pth") != NULL);

    baton_tensor_set_free(ref);
    for (int d = 0; d < 3; d++) {
        unlink(pth[d]);
        unlink(st[d]);
    }
    unlink(again);
    unlink(other);
    unlink(again32);
    *strrchr(again32, '/') = '\0';
    rmdir(again32);
    unlink(hf);
    unlink(hf_pth);
    unlink(zero);
    unlink(def);
    return test_result();
}
