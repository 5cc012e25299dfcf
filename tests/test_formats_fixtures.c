/* The fixture checkpoints read as tensor sets: names, shapes, dtypes, alignment and values (a few
 * read by Python at dev time; the bf16 and fp16 files checked element by element against the fp32
 * one, which they were converted from). */
#include "check.h"
#include "tensor_set.h"

static baton_tensor_set *open_fixture(const char *fixtures, const char *file) {
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", fixtures, file);
    baton_tensor_set *set = NULL;
    baton_error err = {0};
    baton_status st = baton_tensor_set_open(path, &set, &err);
    CHECK_MSG(st == BATON_OK, "%s: %s", file, err.msg);
    REQUIRE(set != NULL);
    return set;
}

static float element(const baton_tensor_set *set, const char *name, size_t i) {
    const baton_tensor *t = baton_tensor_set_find(set, name);
    REQUIRE(t != NULL && i < t->n_elements);
    return baton_load_f32(t->data, t->dtype, i);
}

static void check_tiny_layout(const baton_tensor_set *set, baton_format format) {
    CHECK(set->format == format);
    CHECK(set->n_tensors == 78);
    const baton_tensor *emb = baton_tensor_set_find(set, "emb.weight");
    REQUIRE(emb != NULL);
    CHECK(emb->ndim == 2 && emb->shape[0] == 256 && emb->shape[1] == 128);
    CHECK(emb->n_elements == 256 * 128);
    const baton_tensor *mix = baton_tensor_set_find(set, "blocks.2.att.time_mix_k");
    REQUIRE(mix != NULL);
    if (format == BATON_FORMAT_PTH) {
        CHECK(mix->ndim == 3 && mix->shape[0] == 1 && mix->shape[1] == 1 && mix->shape[2] == 128);
    }
    const baton_tensor *fv = baton_tensor_set_find(set, "blocks.3.ffn.value.weight");
    REQUIRE(fv != NULL);
    CHECK(fv->ndim == 2 && fv->shape[0] == 128 && fv->shape[1] == 256);
    CHECK(baton_tensor_set_find(set, "blocks.4.ln1.weight") == NULL);
    CHECK(baton_tensor_set_find(set, "") == NULL);
    for (size_t i = 0; i < set->n_tensors; i++) {
        const baton_tensor *t = &set->tensors[i];
        uint64_t bytes = t->n_elements * baton_dtype_size(t->dtype);
        CHECK(t->file_offset + bytes <= set->size);
        CHECK((const unsigned char *)t->data == set->base + t->file_offset);
        /* torch.save pads every storage to 64 bytes in the zip. */
        if (format == BATON_FORMAT_PTH) CHECK_MSG(t->file_offset % 64 == 0, "%s", t->name);
    }
}

int main(void) {
    const char *fixtures = test_fixtures();
    baton_tensor_set *f32 = open_fixture(fixtures, "tiny-rwkv4-660K/model.fp32.pth");
    baton_tensor_set *b16 = open_fixture(fixtures, "tiny-rwkv4-660K/model.bf16.pth");
    baton_tensor_set *f16 = open_fixture(fixtures, "tiny-rwkv4-660K/model.fp16.safetensors");
    check_tiny_layout(f32, BATON_FORMAT_PTH);
    check_tiny_layout(b16, BATON_FORMAT_PTH);
    check_tiny_layout(f16, BATON_FORMAT_SAFETENSORS);
    CHECK(strcmp(f32->tensors[0].name, "emb.weight") == 0);
    CHECK(strcmp(f32->tensors[77].name, "head.weight") == 0);

    /* Read with Python's zipfile and pickle at dev time. */
    CHECK(element(f32, "emb.weight", 0) == 2.1533176663979248e-07f);
    CHECK(element(f32, "emb.weight", 255 * 128 + 127) == 3.143879823142015e-08f);
    CHECK(element(f32, "blocks.0.att.time_decay", 0) == 0.00015066919149830937f);
    CHECK(element(f32, "blocks.0.att.time_decay", 127) == 0.0004319211875554174f);
    CHECK(element(f32, "blocks.3.ffn.value.weight", 127 * 256 + 255) == -2.6249657025800843e-07f);
    CHECK(element(f32, "head.weight", 17 * 128 + 3) == -0.0003041924210265279f);
    CHECK(element(f32, "blocks.2.att.time_mix_k", 5) == 2.0812589696106443e-07f);
    CHECK(element(f32, "ln_out.bias", 9) == -0.01074154768139124f);

    /* The bf16 file is the fp32 one rounded; the safetensors one keeps vectors in fp32. */
    for (size_t i = 0; i < f32->n_tensors; i++) {
        const baton_tensor *a = &f32->tensors[i];
        const baton_tensor *b = baton_tensor_set_find(b16, a->name);
        const baton_tensor *h = baton_tensor_set_find(f16, a->name);
        REQUIRE(b != NULL && h != NULL);
        CHECK(a->dtype == BATON_F32 && b->dtype == BATON_BF16);
        CHECK(h->dtype == (a->ndim == 2 ? BATON_F16 : BATON_F32));
        CHECK(a->n_elements == b->n_elements && a->n_elements == h->n_elements);
        size_t bad_b = 0, bad_h = 0;
        for (size_t j = 0; j < a->n_elements; j++) {
            float x = baton_load_f32(a->data, BATON_F32, j);
            if (baton_load_f32(b->data, BATON_BF16, j) != baton_bf16_to_f32(baton_f32_to_bf16(x))) bad_b++;
            float want_h = h->dtype == BATON_F16 ? baton_f16_to_f32(baton_f32_to_f16(x)) : x;
            if (baton_load_f32(h->data, h->dtype, j) != want_h) bad_h++;
        }
        CHECK_MSG(bad_b == 0, "%s: %zu bf16 elements differ", a->name, bad_b);
        CHECK_MSG(bad_h == 0, "%s: %zu safetensors elements differ", a->name, bad_h);
    }
    baton_tensor_set_free(f32);
    baton_tensor_set_free(b16);
    baton_tensor_set_free(f16);

    baton_tensor_set *syn = open_fixture(fixtures, "synth-rwkv4-L4-D96-V300/model.bf16.pth");
    CHECK(syn->n_tensors == 78);
    const baton_tensor *fk = baton_tensor_set_find(syn, "blocks.3.ffn.key.weight");
    REQUIRE(fk != NULL);
    CHECK(fk->dtype == BATON_BF16 && fk->shape[0] == 384 && fk->shape[1] == 96);
    CHECK(element(syn, "emb.weight", 0) == -0.375f);
    CHECK(element(syn, "blocks.1.att.time_first", 3) == 0.64453125f);
    CHECK(element(syn, "head.weight", 299 * 96 + 95) == -0.0277099609375f);
    baton_tensor_set_free(syn);
    return test_result();
}
