/* The device sampler against engine/sampler.c applied to the device's own logits: greedy,
 * temperature, top-k, top-p, presence and frequency penalties, with the per-slot counts kept on
 * the device across steps and cleared by slot_reset. Several sequences with different
 * parameters share each step. */
#include "fixture_cases.h"
#include "test_vk_common.h"

enum { NSEQ = 6 };

static void test_model(const char *path, int steps) {
    baton_model *m = NULL;
    baton_error err = {0};
    REQUIRE(baton_model_load(path, NULL, &m, &err) == BATON_OK);
    int V = m->n_vocab;
    baton_stage_config cfg = {.layer_begin = 0, .layer_end = m->n_layer, .with_embedding = true,
                              .with_head = true, .n_slots = NSEQ, .max_seqs = NSEQ, .max_tokens = NSEQ};
    baton_backend *b = NULL;
    if (baton_vulkan_backend_new(m, &cfg, vk_test_device(), &b, &err) != BATON_OK) {
        fprintf(stderr, "%s\n", err.msg);
        REQUIRE(0);
    }
    const baton_sampling params[NSEQ] = {
        {.temperature = 0.0f, .top_p = 1.0f},
        {.temperature = 1.0f, .top_p = 1.0f},
        {.temperature = 0.7f, .top_k = 5, .top_p = 1.0f},
        {.temperature = 1.3f, .top_p = 0.9f},
        {.temperature = 0.9f, .top_k = 40, .top_p = 0.5f, .presence_penalty = 0.5f, .frequency_penalty = 0.3f},
        {.temperature = 0.0f, .top_p = 1.0f, .presence_penalty = 2.0f, .frequency_penalty = 1.0f},
    };
    uint32_t *counts = calloc((size_t)NSEQ * V, 4);
    float *logits = malloc((size_t)NSEQ * V * 4);
    void *scratch = malloc(baton_sample_scratch_bytes(V));
    REQUIRE(counts && logits && scratch);
    baton_rng rng;
    baton_rng_seed(&rng, 42);
    int32_t tokens[NSEQ], out[NSEQ];
    baton_seq seqs[NSEQ];
    for (int i = 0; i < NSEQ; i++) {
        tokens[i] = (int32_t)((i * 37 + 11) % V);
        seqs[i] = (baton_seq){.slot = NSEQ - 1 - i, .n_tokens = 1};
    }
    int mismatches = 0, distinct = 0;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < NSEQ; i++) REQUIRE(b->ops->slot_reset(b, i, &err) == BATON_OK);
        memset(counts, 0, (size_t)NSEQ * V * 4);
        for (int s = 0; s < steps; s++) {
            baton_sampling p[NSEQ];
            memcpy(p, params, sizeof p);
            for (int i = 0; i < NSEQ; i++) p[i].uniform = baton_rng_uniform(&rng);
            baton_step st = {.n_seqs = NSEQ, .seqs = seqs, .tokens = tokens, .logits = logits,
                             .sampling = p, .tokens_out = out};
            if (baton_backend_step(b, &st, &err) != BATON_OK) {
                fprintf(stderr, "%s\n", err.msg);
                REQUIRE(0);
            }
            for (int i = 0; i < NSEQ; i++) {
                uint32_t *c = counts + (size_t)seqs[i].slot * V;
                int32_t want = baton_sample(logits + (size_t)i * V, V, &p[i], c, scratch);
                if (want != out[i]) {
                    mismatches++;
                    fprintf(stderr, "step %d seq %d: device chose %d, CPU %d (u %.7f)\n", s, i, out[i],
                            want, (double)p[i].uniform);
                }
                REQUIRE(out[i] >= 0 && out[i] < V);
                c[out[i]]++;
                distinct += out[i] != tokens[i];
                tokens[i] = out[i];
            }
        }
    }
    printf("%s: %d draws, %d differ from the CPU sampler; %d token changes\n", path, 2 * steps * NSEQ,
           mismatches, distinct);
    CHECK_MSG(mismatches == 0, "device sampling differs from the CPU sampler %d time(s)", mismatches);
    CHECK(distinct > 0);
    free(counts);
    free(logits);
    free(scratch);
    baton_backend_free(b);
    baton_model_free(m);
}

int main(void) {
    vk_test_require_device();
    const char *dir = test_fixtures();
    char path[4200];
    int steps = vk_test_small() ? 4 : 24;
    snprintf(path, sizeof path, "%s/tiny-rwkv4-660K/model.fp16.safetensors", dir);
    test_model(path, steps);
    snprintf(path, sizeof path, "%s/synth-rwkv4-L4-D96-V300/model.bf16.pth", dir);
    test_model(path, steps);
    return vk_test_result();
}
