/* The device sampler against engine/sampler.c applied to the device's own logits: greedy,
 * temperature, top-k, top-p, presence and frequency penalties, with the per-slot counts kept on
 * the device across steps and cleared by slot_reset. Several sequences with different
 * parameters share each step; the parameters and models take both of the sampler's ways (few
 * candidates, and the whole vocabulary). */
#include <math.h>
#include <unistd.h>

#include "fixture_cases.h"
#include "synth.h"
#include "test_vk_common.h"

enum { NSEQ = 6 };

/* For the fixtures' trained and small models (V of 256 and 300): no more candidates than the
 * few-candidates way holds, so every cut takes it unless BATON_VK_SAMPLE_FEW=0. */
static const baton_sampling peaked[NSEQ] = {
    {.temperature = 0.0f, .top_p = 1.0f},
    {.temperature = 1.0f, .top_p = 1.0f},
    {.temperature = 0.7f, .top_k = 5, .top_p = 1.0f},
    {.temperature = 1.3f, .top_p = 0.9f},
    {.temperature = 0.9f, .top_k = 40, .top_p = 0.5f, .presence_penalty = 0.5f, .frequency_penalty = 0.3f},
    {.temperature = 0.0f, .top_p = 1.0f, .presence_penalty = 2.0f, .frequency_penalty = 1.0f},
};

/* A random model with V 4000: top-k 5 still has few candidates, but at temperature 100 every p
 * lies in [0.5, 1] (a logit spread under 69), so the top-p cut has thousands of candidates, and
 * top-k 600 has more than the 512 the few-candidates way holds: those take the other way. */
static const baton_sampling wide[NSEQ] = {
    {.temperature = 0.7f, .top_k = 5, .top_p = 1.0f},
    {.temperature = 100.0f, .top_p = 0.9f},
    {.temperature = 1.0f, .top_k = 600, .top_p = 1.0f},
    {.temperature = 1.0f, .top_p = 0.85f},
    {.temperature = 50.0f, .top_k = 700, .top_p = 0.6f, .presence_penalty = 0.5f, .frequency_penalty = 0.3f},
    {.temperature = 0.0f, .top_p = 1.0f},
};

/* A draw this close to the device's (as a fraction of the kept mass) may pick its token. On a
 * flat distribution of thousands of kept tokens, the top-p cut's sums in a tree and in sequence
 * can disagree on the last token kept, which moves the target by about one token's share: 1/3600
 * of the mass at temperature 100 with V 4000. */
static const float DRAW_SLACK = 1e-3f;

/* exact: every draw must be the CPU's (peaked distributions: the few-candidates way sums as the
 * CPU does, but for top-p's total); else a draw may differ within rounding of a boundary. */
static void test_model(const char *path, int steps, const baton_sampling params[NSEQ], bool exact) {
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
    int mismatches = 0, near_misses = 0, distinct = 0;
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
                const float *l = logits + (size_t)i * V;
                int32_t want = baton_sample(l, V, &p[i], c, scratch);
                if (want != out[i]) {
                    /* Within rounding of a boundary: the CPU itself draws the device's token
                     * for a draw a hair away (its choice only moves up the kept ids as the draw
                     * grows). */
                    baton_sampling lo = p[i], hi = p[i];
                    lo.uniform = fmaxf(p[i].uniform - DRAW_SLACK, 0.0f);
                    hi.uniform = fminf(p[i].uniform + DRAW_SLACK, 0x1.fffffep-1f);
                    bool near = baton_sample(l, V, &lo, c, scratch) <= out[i] &&
                                out[i] <= baton_sample(l, V, &hi, c, scratch);
                    near_misses += near;
                    mismatches += !near || exact;
                    fprintf(stderr, "step %d seq %d: device chose %d, CPU %d (u %.7f)%s\n", s, i,
                            out[i], want, (double)p[i].uniform, near ? ", within rounding" : "");
                }
                REQUIRE(out[i] >= 0 && out[i] < V);
                c[out[i]]++;
                distinct += out[i] != tokens[i];
                tokens[i] = out[i];
            }
        }
    }
    printf("%s: %d draws, %d differ from the CPU sampler (%d within rounding of a boundary%s); "
           "%d token changes\n", path, 2 * steps * NSEQ, mismatches, near_misses,
           exact ? ", not allowed here" : "", distinct);
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
    /* The fixtures both ways: few candidates, then (BATON_VK_SAMPLE_FEW=0) the whole vocabulary. */
    for (int way = 0; way < 2; way++) {
        if (way) setenv("BATON_VK_SAMPLE_FEW", "0", 1);
        printf("== %s\n", way ? "BATON_VK_SAMPLE_FEW=0: every cut over the whole vocabulary"
                              : "few candidates where they suffice");
        snprintf(path, sizeof path, "%s/tiny-rwkv4-660K/model.fp16.safetensors", dir);
        test_model(path, steps, peaked, true);
        snprintf(path, sizeof path, "%s/synth-rwkv4-L4-D96-V300/model.bf16.pth", dir);
        test_model(path, steps, peaked, true);
    }
    unsetenv("BATON_VK_SAMPLE_FEW");
    const char *tmp = getenv("BATON_TMP");
    snprintf(path, sizeof path, "%s/%d-sample-v4000.safetensors", tmp ? tmp : "/tmp", (int)getpid());
    baton_synth_options so = {.n_layer = 2, .n_embd = 64, .n_vocab = 4000, .dtype = BATON_F16,
                              .seed = 7};
    baton_error err = {0};
    if (baton_synth_write(&so, path, &err) != BATON_OK) {
        fprintf(stderr, "%s\n", err.msg);
        REQUIRE(0);
    }
    test_model(path, steps, wide, false);
    remove(path);
    return vk_test_result();
}
