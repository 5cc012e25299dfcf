/* baton_model_load on the fixture checkpoints: hyperparameters, conversions, layer ranges. */
#include "check.h"
#include "model.h"
#include "tensor_set.h"

static baton_model *load(const char *fixtures, const char *file, const baton_model_options *opt) {
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", fixtures, file);
    baton_model *m = NULL;
    baton_error err = {0};
    baton_status st = baton_model_load(path, opt, &m, &err);
    CHECK_MSG(st == BATON_OK, "%s: %s", file, err.msg);
    REQUIRE(m != NULL);
    return m;
}

static uint64_t tiny_matrix_elements(int layers, bool emb, bool head) {
    uint64_t c = 128, f = 256, v = 256;
    return (uint64_t)layers * (5 * c * c + 2 * f * c) + (emb ? v * c : 0) + (head ? v * c : 0);
}

/* The model's vectors and matrices against the same tensors read directly. */
static void check_against_set(const baton_model *m, const char *fixtures, const char *file) {
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", fixtures, file);
    baton_tensor_set *set = NULL;
    REQUIRE(baton_tensor_set_open(path, &set, NULL) == BATON_OK);
    const baton_tensor *decay = baton_tensor_set_find(set, "blocks.2.att.time_decay");
    const baton_tensor *mix = baton_tensor_set_find(set, "blocks.1.ffn.time_mix_r");
    const baton_tensor *fv = baton_tensor_set_find(set, "blocks.3.ffn.value.weight");
    REQUIRE(decay && mix && fv);
    for (int i = 0; i < m->n_embd; i++) {
        CHECK(m->layers[2].att_time_decay[i] == -expf(baton_load_f32(decay->data, decay->dtype, i)));
        CHECK(m->layers[1].ffn_time_mix_r[i] == baton_load_f32(mix->data, mix->dtype, i));
    }
    const baton_matrix *w = &m->layers[3].ffn_value;
    CHECK(w->rows == 128 && w->cols == 256 && w->dtype == fv->dtype);
    CHECK(memcmp(w->data, fv->data, fv->n_elements * baton_dtype_size(fv->dtype)) == 0);
    CHECK((uintptr_t)w->data % baton_dtype_size(w->dtype) == 0);
    baton_tensor_set_free(set);
}

static void check_tiny(const char *fixtures, const char *file, baton_dtype dtype) {
    baton_model *m = load(fixtures, file, NULL);
    CHECK(m->n_layer == 4 && m->n_embd == 128 && m->n_vocab == 256 && m->n_ffn == 256);
    CHECK(m->dtype == dtype);
    CHECK(m->layer_begin == 0 && m->layer_end == 4 && m->has_embedding && m->has_head);
    CHECK(m->emb.rows == 256 && m->emb.cols == 128 && m->head.rows == 256);
    CHECK(m->ln0_w != NULL && m->ln0_b != NULL && m->ln_out_w != NULL && m->ln_out_b != NULL);
    for (int l = 0; l < 4; l++) {
        const baton_layer *L = &m->layers[l];
        CHECK(L->ln1_w && L->ln2_b && L->att_time_mix_v && L->att_time_first && L->ffn_time_mix_k);
        CHECK(L->ffn_key.rows == 256 && L->ffn_key.cols == 128 && L->ffn_receptance.rows == 128);
        for (int i = 0; i < 128; i++) CHECK(L->att_time_decay[i] < 0.0f);
    }
    CHECK(baton_model_weight_bytes(m) == tiny_matrix_elements(4, true, true) * baton_dtype_size(dtype));
    check_against_set(m, fixtures, file);
    baton_model_free(m);
}

int main(void) {
    const char *fixtures = test_fixtures();
    check_tiny(fixtures, "tiny-rwkv4-660K/model.fp32.pth", BATON_F32);
    check_tiny(fixtures, "tiny-rwkv4-660K/model.bf16.pth", BATON_BF16);
    check_tiny(fixtures, "tiny-rwkv4-660K/model.fp16.safetensors", BATON_F16);

    /* Read by Python at dev time: time_decay[0] of layer 0 is 0.00015066919149830937. */
    baton_model *m = load(fixtures, "tiny-rwkv4-660K/model.fp32.pth", NULL);
    CHECK(m->layers[0].att_time_decay[0] == -expf(0.00015066919149830937f));
    CHECK(m->ln_out_b[9] == -0.01074154768139124f);
    baton_model_free(m);

    m = load(fixtures, "synth-rwkv4-L4-D96-V300/model.bf16.pth", NULL);
    CHECK(m->n_layer == 4 && m->n_embd == 96 && m->n_vocab == 300 && m->n_ffn == 384);
    CHECK(m->dtype == BATON_BF16);
    CHECK(m->layers[1].att_time_first[3] == 0.64453125f);
    baton_model_free(m);

    /* A middle stage: only layers 1 and 2, no embedding, no head. */
    baton_model_options mid = {.layer_begin = 1, .layer_end = 3, .prefetch = true};
    m = load(fixtures, "tiny-rwkv4-660K/model.bf16.pth", &mid);
    CHECK(m->n_layer == 4 && m->layer_begin == 1 && m->layer_end == 3);
    CHECK(!m->has_embedding && !m->has_head);
    CHECK(m->emb.data == NULL && m->ln0_w == NULL && m->head.data == NULL && m->ln_out_w == NULL);
    CHECK(m->layers[0].ln1_w == NULL && m->layers[0].att_key.data == NULL);
    CHECK(m->layers[3].ln1_w == NULL && m->layers[3].ffn_value.data == NULL);
    CHECK(m->layers[1].ln1_w != NULL && m->layers[2].ffn_value.data != NULL);
    CHECK(baton_model_weight_bytes(m) == tiny_matrix_elements(2, false, false) * 2);
    baton_model_free(m);

    /* First and last stages, and the embedding or head left out on purpose. */
    baton_model_options first = {.layer_begin = 0, .layer_end = 2};
    m = load(fixtures, "tiny-rwkv4-660K/model.fp32.pth", &first);
    CHECK(m->has_embedding && !m->has_head && m->emb.data != NULL && m->ln0_w != NULL);
    baton_model_free(m);
    baton_model_options last = {.layer_begin = 2, .layer_end = 4, .skip_head = true};
    m = load(fixtures, "tiny-rwkv4-660K/model.fp32.pth", &last);
    CHECK(!m->has_embedding && !m->has_head && m->head.data == NULL);
    baton_model_free(m);
    baton_model_options no_emb = {.skip_embedding = true};
    m = load(fixtures, "tiny-rwkv4-660K/model.fp32.pth", &no_emb);
    CHECK(!m->has_embedding && m->has_head && m->emb.data == NULL && m->ln0_w == NULL);
    CHECK(baton_model_weight_bytes(m) == tiny_matrix_elements(4, false, true) * 4);
    baton_model_free(m);

    /* Ranges outside the model are the caller's error, named with the file. */
    baton_model_options bad[] = {{.layer_begin = 2, .layer_end = 2}, {.layer_begin = 3, .layer_end = 5},
                                 {.layer_begin = -1, .layer_end = 2}, {.layer_begin = 1, .layer_end = 0}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        baton_error err = {0};
        char path[8192];
        snprintf(path, sizeof path, "%s/tiny-rwkv4-660K/model.fp32.pth", fixtures);
        m = (baton_model *)1;
        CHECK(baton_model_load(path, &bad[i], &m, &err) == BATON_ERR_ARG);
        CHECK(m == NULL);
        CHECK_MSG(strstr(err.msg, "model.fp32.pth") != NULL, "%s", err.msg);
    }
    baton_error err = {0};
    CHECK(baton_model_load("/nonexistent/m.pth", NULL, &m, &err) == BATON_ERR_IO);
    CHECK(strstr(err.msg, "/nonexistent/m.pth") != NULL);
    return test_result();
}
