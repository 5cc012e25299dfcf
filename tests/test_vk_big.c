/* 14B-shaped layers on the device against the CPU reference: C 5120, F 20480, V 50277 (one
 * layer and the head, random fp16 weights built in memory), so the FFN matrices (210 MB) and the
 * head (515 MB) are split into row chunks under lavapipe's 128 MiB binding limit. Two tokens
 * one at a time, then both as one prefill; logits and state within the fp16-weight bound; the
 * prefill again with its LayerNorms spread otherwise, and the two again reading weights ahead,
 * then also with fused LayerNorms and WKV, bitwise the same. */
#include "bench_model.h"
#include "fixture_cases.h"
#include "test_vk_common.h"

int main(void) {
    vk_test_require_device();
    int L = 1, C = 5120, V = 50277;
    if (vk_test_small()) C = 1024; /* the validation run: same code paths, faster */
    baton_model *m = bench_model_new(L, C, V, 3);
    if (m == NULL) test_skip("not enough host memory for a 14B-shaped layer");
    baton_stage_config cfg = {.layer_begin = 0, .layer_end = L, .with_embedding = true,
                              .with_head = true, .n_slots = 2, .max_seqs = 2, .max_tokens = 2};
    baton_error err = {0};
    baton_backend *cpu = NULL, *vk = NULL;
    REQUIRE(baton_cpu_backend_new(m, &cfg, &cpu, &err) == BATON_OK);
    if (baton_vulkan_backend_new(m, &cfg, vk_test_device(), &vk, &err) != BATON_OK) {
        fprintf(stderr, "%s\n", err.msg);
        REQUIRE(0);
    }
    const int32_t tokens[2] = {50000, 123};
    float *lc = malloc((size_t)2 * V * 4), *lv = malloc((size_t)2 * V * 4), *lp = malloc((size_t)2 * V * 4);
    float *sc = malloc((size_t)L * 5 * C * 4), *sv = malloc((size_t)L * 5 * C * 4);
    REQUIRE(lc && lv && lp && sc && sv);
    for (int t = 0; t < 2; t++) {
        baton_seq q = {.slot = 0, .n_tokens = 1};
        baton_step s = {.n_seqs = 1, .seqs = &q, .tokens = &tokens[t], .logits = lc + (size_t)t * V};
        REQUIRE(baton_backend_step(cpu, &s, &err) == BATON_OK);
        s.logits = lv + (size_t)t * V;
        REQUIRE(baton_backend_step(vk, &s, &err) == BATON_OK);
    }
    baton_seq q = {.slot = 1, .n_tokens = 2};
    baton_step s = {.n_seqs = 1, .seqs = &q, .tokens = tokens, .logits = lp, .logits_all_tokens = true};
    REQUIRE(baton_backend_step(vk, &s, &err) == BATON_OK);
    REQUIRE(cpu->ops->slot_read(cpu, 0, sc, &err) == BATON_OK);
    REQUIRE(vk->ops->slot_read(vk, 0, sv, &err) == BATON_OK);
    double d = max_abs_diff(lv, lc, (size_t)2 * V), dp = max_abs_diff(lp, lc, (size_t)2 * V);
    double ds = state_diff(sv, sc, L, C);
    float big = 0;
    for (size_t i = 0; i < (size_t)2 * V; i++) big = fabsf(lc[i]) > big ? fabsf(lc[i]) : big;
    printf("C %d F %d V %d: max |logit| %.2f, device vs CPU %.2e (prefill %.2e), state %.2e\n", C,
           4 * C, V, (double)big, d, dp, ds);
    CHECK_MSG(d <= 2e-3 && dp <= 2e-3, "logits differ from the CPU reference by %g / %g", d, dp);
    CHECK_MSG(ds <= 2e-3, "state differs from the CPU reference by %g", ds);
    CHECK(big > 0.1f);
    /* The prefill again with its LayerNorms in one workgroup a token (16 a token by default,
     * each computing the row's statistics itself): bitwise the same logits. */
    REQUIRE(baton_vk_ln_spread_set(vk, 1, &err) == BATON_OK);
    REQUIRE(vk->ops->slot_reset(vk, 1, &err) == BATON_OK);
    float *l1 = malloc((size_t)2 * V * 4);
    REQUIRE(l1);
    s.logits = l1;
    REQUIRE(baton_backend_step(vk, &s, &err) == BATON_OK);
    CHECK_MSG(memcmp(l1, lp, (size_t)2 * V * 4) == 0, "the LayerNorms' spread changed the logits");
    REQUIRE(baton_vk_ln_spread_set(vk, 32, &err) == BATON_OK);
    CHECK(baton_vk_ln_spread_set(vk, 0, &err) == BATON_ERR_ARG);
    free(l1);
    /* The same two one-token steps reading 64 MiB of each product ahead (the most; lavapipe's
     * chunks are 128 MiB, the head five of them): bitwise the same logits. */
    REQUIRE(baton_vk_prefetch_set(vk, 64, &err) == BATON_OK);
    REQUIRE(vk->ops->slot_reset(vk, 0, &err) == BATON_OK);
    for (int t = 0; t < 2; t++) {
        baton_seq q0 = {.slot = 0, .n_tokens = 1};
        baton_step s0 = {.n_seqs = 1, .seqs = &q0, .tokens = &tokens[t], .logits = lp + (size_t)t * V};
        REQUIRE(baton_backend_step(vk, &s0, &err) == BATON_OK);
    }
    CHECK_MSG(memcmp(lp, lv, (size_t)2 * V * 4) == 0, "reading 64 MiB ahead changed the logits");
    /* And again with fused LayerNorms and WKV under the GPUs' default matvec (it stages x): the
     * FFN's key/receptance product's receptance rows, which write the LayerNorm out for the state,
     * lie in its last chunk here (the output matrix, 52 MB, is one). Bitwise the same logits and
     * state. */
    REQUIRE(baton_vk_matvec_fuses(0) && baton_vk_matvec_select(vk, 0, &err) == BATON_OK);
    baton_vk_fuse_set(vk, BATON_VK_FUSE_LN | BATON_VK_FUSE_WKV);
    REQUIRE(vk->ops->slot_reset(vk, 0, &err) == BATON_OK);
    for (int t = 0; t < 2; t++) {
        baton_seq q0 = {.slot = 0, .n_tokens = 1};
        baton_step s0 = {.n_seqs = 1, .seqs = &q0, .tokens = &tokens[t], .logits = lp + (size_t)t * V};
        REQUIRE(baton_backend_step(vk, &s0, &err) == BATON_OK);
    }
    REQUIRE(vk->ops->slot_read(vk, 0, sc, &err) == BATON_OK);
    bool same = memcmp(lp, lv, (size_t)2 * V * 4) == 0 && memcmp(sc, sv, (size_t)L * 5 * C * 4) == 0;
    CHECK_MSG(same, "fusing changed the logits or the state");
    printf("reading 64 MiB ahead, then with fused LayerNorms and WKV under %s: %s\n",
           baton_vk_matvec_name(0), same ? "bitwise the same" : "DIFFERENT");
    free(lc);
    free(lv);
    free(lp);
    free(sc);
    free(sv);
    baton_backend_free(vk);
    baton_backend_free(cpu);
    bench_model_free(m);
    return vk_test_result();
}
