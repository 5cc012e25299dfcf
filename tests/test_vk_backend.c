/* The Vulkan backend against the fixtures' float64 references (the README's bounds for fp16
 * weights): every case token by token and as one prefill, logits and state; concurrent streams of
 * different lengths in shared steps, each stream's logits bitwise equal to its solo run; two
 * consecutive layer slices (the same device twice) bitwise equal to one run; slot round trips.
 * Then the cases and streams again on the tensor-core path: BATON_VK_COOPMAT=1 where the device
 * has cooperative matrices, else its EMULATE variants (BATON_VK_COOPMAT=emulate), within the same
 * bounds and just as batch invariant. Tuning (BATON_VK_TUNE) changes no bit of either, and where
 * it chooses the path (BATON_VK_COOPMAT auto) it runs all of one; reading weights ahead
 * (BATON_VK_PREFETCH) and fusing (BATON_VK_FUSE) change none either. */
#include <dirent.h>
#include <unistd.h>

#include "fixture_cases.h"
#include "test_vk_common.h"

enum { SLOTS = 4 };

static baton_backend *open_backend(const baton_model *m, int begin, int end, int max_tokens) {
    baton_stage_config cfg = {
        .layer_begin = begin, .layer_end = end,
        .with_embedding = begin == 0, .with_head = end == m->n_layer,
        .n_slots = SLOTS, .max_seqs = SLOTS, .max_tokens = max_tokens < SLOTS ? SLOTS : max_tokens,
    };
    baton_backend *b = NULL;
    baton_error err = {0};
    if (baton_vulkan_backend_new(m, &cfg, vk_test_device(), &b, &err) != BATON_OK) {
        fprintf(stderr, "baton_vulkan_backend_new: %s\n", err.msg);
        REQUIRE(0);
    }
    return b;
}

static void step_ok(baton_backend *b, const baton_step *s) {
    baton_error err = {0};
    baton_status st = baton_backend_step(b, s, &err);
    if (st != BATON_OK) fprintf(stderr, "step: %s\n", err.msg);
    REQUIRE(st == BATON_OK);
}

static void slot_op_ok(baton_status st, const baton_error *err) {
    if (st != BATON_OK) fprintf(stderr, "slot: %s\n", err->msg);
    REQUIRE(st == BATON_OK);
}

/* Token by token and as one prefill, against the reference logits and state. */
static void test_case(const fixture_case *fc, int n_tokens) {
    baton_model *m = NULL;
    baton_error err = {0};
    REQUIRE(baton_model_load(fc->model, NULL, &m, &err) == BATON_OK);
    int V = m->n_vocab, C = m->n_embd, L = m->n_layer;
    float *ref = fixture_floats(fc->logits, (size_t)fc->n_tokens * V);
    float *ref_state = fixture_floats(fc->state, (size_t)L * 5 * C);
    float *logits = malloc((size_t)n_tokens * V * 4), *prefill = malloc((size_t)n_tokens * V * 4);
    float *state = malloc((size_t)L * 5 * C * 4), *state2 = malloc((size_t)L * 5 * C * 4);
    REQUIRE(logits && prefill && state && state2);
    baton_backend *b = open_backend(m, 0, L, n_tokens);
    double bound = gpu_bound(fc);

    /* Token by token in slot 0: every step after the first submits the first one's commands. */
    slot_op_ok(b->ops->slot_reset(b, 0, &err), &err);
    int replayed = 0;
    for (int t = 0; t < n_tokens; t++) {
        baton_seq q = {.slot = 0, .n_tokens = 1};
        baton_step s = {.n_seqs = 1, .seqs = &q, .tokens = &fc->tokens[t],
                        .logits = logits + (size_t)t * V};
        step_ok(b, &s);
        replayed += baton_vk_step_replayed(b);
    }
    CHECK_MSG(replayed == n_tokens - 1, "%s: %d of %d token steps replayed", fc->name, replayed,
              n_tokens - 1);
    double d = max_abs_diff(logits, ref, (size_t)n_tokens * V);
    printf("%s (%s): token by token, %d tokens: max |logit - ref| %.2e (bound %.0e)\n", fc->name,
           fc->dtype, n_tokens, d, bound);
    CHECK_MSG(d <= bound, "%s: token-by-token logits off by %g", fc->name, d);
    slot_op_ok(b->ops->slot_read(b, 0, state, &err), &err);
    if (n_tokens == fc->n_tokens) {
        double ds = state_diff(state, ref_state, L, C);
        printf("%s: state difference %.2e\n", fc->name, ds);
        CHECK_MSG(ds <= bound, "%s: state off by %g", fc->name, ds);
    }

    /* All tokens as one prefill in slot 1, every token's logits. */
    slot_op_ok(b->ops->slot_reset(b, 1, &err), &err);
    baton_seq q = {.slot = 1, .n_tokens = n_tokens};
    baton_step s = {.n_seqs = 1, .seqs = &q, .tokens = fc->tokens, .logits = prefill, .logits_all_tokens = true};
    step_ok(b, &s);
    d = max_abs_diff(prefill, ref, (size_t)n_tokens * V);
    bool same = memcmp(prefill, logits, (size_t)n_tokens * V * 4) == 0;
    printf("%s: prefill: max |logit - ref| %.2e; %s token by token\n", fc->name, d,
           same ? "bitwise equal to" : "differs from");
    CHECK_MSG(d <= bound, "%s: prefill logits off by %g", fc->name, d);
    CHECK_MSG(same, "%s: prefill differs from token by token", fc->name);
    slot_op_ok(b->ops->slot_read(b, 1, state2, &err), &err);
    if (n_tokens == fc->n_tokens) {
        double ds = state_diff(state2, ref_state, L, C);
        CHECK_MSG(ds <= bound, "%s: prefill state off by %g", fc->name, ds);
    }

    /* Slot round trip: write slot 0's state into slot 3, read it back bitwise. */
    slot_op_ok(b->ops->slot_write(b, 3, state, &err), &err);
    slot_op_ok(b->ops->slot_read(b, 3, state2, &err), &err);
    CHECK_MSG(memcmp(state, state2, (size_t)L * 5 * C * 4) == 0, "%s: slot write/read", fc->name);
    /* And a step from the written slot continues exactly like slot 0 would. */
    baton_backend_free(b);
    free(logits);
    free(prefill);
    free(state);
    free(state2);
    free(ref);
    free(ref_state);
    baton_model_free(m);
}

/* Kept command buffers go stale with the kernel configuration: after a matvec configuration
 * change the next step records anew (a replay would still run the old kernels) and, as every
 * configuration sums alike, gives the same bits. */
static void test_replay_stale(const fixture_case *fc) {
    baton_model *m = NULL;
    baton_error err = {0};
    REQUIRE(baton_model_load(fc->model, NULL, &m, &err) == BATON_OK);
    int V = m->n_vocab;
    baton_backend *b = open_backend(m, 0, m->n_layer, 4);
    float *want = malloc((size_t)V * 4), *got = malloc((size_t)V * 4);
    REQUIRE(want && got);
    const int configs[] = {0, 0, 1, 1, 0};
    const bool replay[] = {false, true, false, true, false};
    for (int i = 0; i < 5; i++) {
        /* 1 is the fallback, which every device builds */
        REQUIRE(baton_vk_matvec_select(b, configs[i], &err) == BATON_OK);
        slot_op_ok(b->ops->slot_reset(b, 0, &err), &err);
        baton_seq q = {.slot = 0, .n_tokens = 1};
        baton_step s = {.n_seqs = 1, .seqs = &q, .tokens = fc->tokens, .logits = i ? got : want};
        step_ok(b, &s);
        CHECK_MSG(baton_vk_step_replayed(b) == replay[i], "%s: step %d (matvec %s) %s", fc->name,
                  i, baton_vk_matvec_name(configs[i]),
                  replay[i] ? "recorded again" : "replayed a stale command buffer");
        if (i) CHECK_MSG(memcmp(got, want, (size_t)V * 4) == 0, "%s: step %d differs", fc->name, i);
    }
    printf("%s: kept command buffers replayed, and recorded anew after a kernel change\n", fc->name);
    free(want);
    free(got);
    baton_backend_free(b);
    baton_model_free(m);
}

/* Profiling (baton_vk_profile): the same logits as without it; every group of dispatches between
 * barriers, and the one after the last, timed once per step; kept command buffers neither used
 * nor made while it is on, and used again after. */
static void test_profile(const fixture_case *fc) {
    baton_model *m = NULL;
    baton_error err = {0};
    REQUIRE(baton_model_load(fc->model, NULL, &m, &err) == BATON_OK);
    int V = m->n_vocab;
    baton_backend *b = open_backend(m, 0, m->n_layer, 4);
    float *want = malloc((size_t)3 * V * 4), *got = malloc((size_t)3 * V * 4);
    REQUIRE(want && got);
    for (int pass = 0; pass < 2; pass++) {
        slot_op_ok(b->ops->slot_reset(b, 0, &err), &err);
        if (pass == 1 && !baton_vk_profile(b, true)) {
            printf("%s: no timestamps here, no profile\n", fc->name);
            break;
        }
        for (int t = 0; t < 3; t++) {
            baton_seq q = {.slot = 0, .n_tokens = 1};
            baton_step s = {.n_seqs = 1, .seqs = &q, .tokens = &fc->tokens[t],
                            .logits = (pass ? got : want) + (size_t)t * V};
            step_ok(b, &s);
            if (pass == 1) CHECK_MSG(!baton_vk_step_replayed(b), "%s: a profiled step replayed", fc->name);
        }
        if (pass == 0) continue;
        uint32_t dispatches = 0, barriers = 0, steps = 0, groups = 0;
        baton_vk_step_counts(b, &dispatches, &barriers);
        baton_vk_profile_entry e[BATON_SHADER_ENTRIES];
        int n = baton_vk_profile_read(b, BATON_SHADER_ENTRIES, e, &steps);
        double total = 0.0;
        for (int i = 0; i < n; i++) {
            groups += e[i].groups;
            total += e[i].secs;
            CHECK(e[i].secs >= 0.0 && (i == 0 || e[i].secs <= e[i - 1].secs));
        }
        CHECK_MSG(steps == 3 && groups == 3 * (barriers + 1) && total > 0.0,
                  "%s: profile of %u steps, %u groups (%u barriers a step), %g s", fc->name, steps,
                  groups, barriers, total);
        CHECK_MSG(memcmp(got, want, (size_t)3 * V * 4) == 0, "%s: profiled logits differ", fc->name);
        baton_vk_profile(b, false);
        for (int t = 0; t < 2; t++) {
            baton_seq q = {.slot = 0, .n_tokens = 1};
            baton_step s = {.n_seqs = 1, .seqs = &q, .tokens = &fc->tokens[t], .logits = got};
            step_ok(b, &s);
        }
        CHECK_MSG(baton_vk_step_replayed(b), "%s: no replay after profiling", fc->name);
        printf("%s: profiled 3 steps, %u groups, %d kernels, %s first; logits unchanged\n", fc->name,
               groups, n, n > 0 ? e[0].name : "none");
    }
    free(want);
    free(got);
    baton_backend_free(b);
    baton_model_free(m);
}

/* The last logits of four steps in slot 0 from a fresh state, one for each kind of matmul
 * configuration: 40 tokens (the 64-token tier), 20 (the 32-token one), 5 (the 8-token one), 1
 * (the matvec), every id made up: out[KINDS][V]. Needs max_tokens >= 40. */
enum { KINDS = 4, KIND_TOKENS = 66 };
static void every_kind(baton_backend *b, float *out) {
    baton_error err = {0};
    int V = b->model->n_vocab;
    int32_t tokens[KIND_TOKENS];
    for (int i = 0; i < KIND_TOKENS; i++) tokens[i] = (int32_t)((i * 7919 + 13) % V);
    slot_op_ok(b->ops->slot_reset(b, 0, &err), &err);
    const int counts[KINDS] = {40, 20, 5, 1};
    for (int i = 0, at = 0; i < KINDS; at += counts[i], i++) {
        baton_seq q = {.slot = 0, .n_tokens = counts[i]};
        baton_step s = {.n_seqs = 1, .seqs = &q, .tokens = tokens + at, .logits = out + (size_t)i * V};
        step_ok(b, &s);
    }
}

/* An environment variable as it was, to put back. */
typedef struct {
    const char *name;
    char value[64];
    bool set;
} env_saved;

static env_saved env_save(const char *name) {
    env_saved e = {.name = name};
    const char *v = getenv(name);
    e.set = v != NULL;
    if (e.set) snprintf(e.value, sizeof e.value, "%s", v);
    return e;
}

static void env_restore(const env_saved *e) {
    if (e->set)
        setenv(e->name, e->value, 1);
    else
        unsetenv(e->name);
}

/* A backend asked for under name=value is refused before anything is uploaded, the variable
 * named in the error (the caller puts it back). */
static void check_refused(const baton_model *m, const char *name, const char *value) {
    setenv(name, value, 1);
    baton_stage_config cfg = {.layer_begin = 0, .layer_end = m->n_layer, .with_embedding = true,
                              .with_head = true, .n_slots = 1, .max_seqs = 1, .max_tokens = 1};
    baton_backend *b = NULL;
    baton_error err = {0};
    baton_status st = baton_vulkan_backend_new(m, &cfg, vk_test_device(), &b, &err);
    char want[128];
    snprintf(want, sizeof want, "%s=%s", name, value);
    CHECK_MSG(st == BATON_ERR_ARG && b == NULL && strstr(err.msg, want) != NULL, "%s: status %d, %s",
              want, (int)st, err.msg);
    if (b != NULL) baton_backend_free(b);
}

enum { ONES = 3 }; /* one_then_two's one-token steps */

/* From a fresh slot 0: ONES one-token steps of fc's first tokens, then one step of the next two,
 * their logits [ONES + 2][V] in logits; the dispatches and barriers of the last one-token step
 * (one, barriers[0]) and of the two-token step (two, barriers[1]). */
static void one_then_two(baton_backend *b, const fixture_case *fc, int V, float *logits,
                         uint32_t *one, uint32_t *two, uint32_t barriers[2]) {
    baton_error err = {0};
    slot_op_ok(b->ops->slot_reset(b, 0, &err), &err);
    for (int t = 0; t < ONES; t++) {
        baton_seq q = {.slot = 0, .n_tokens = 1};
        baton_step s = {.n_seqs = 1, .seqs = &q, .tokens = &fc->tokens[t], .logits = logits + (size_t)t * V};
        step_ok(b, &s);
    }
    baton_vk_step_counts(b, one, &barriers[0]);
    baton_seq q = {.slot = 0, .n_tokens = 2};
    baton_step s = {.n_seqs = 1, .seqs = &q, .tokens = &fc->tokens[ONES],
                    .logits = logits + (size_t)ONES * V, .logits_all_tokens = true};
    step_ok(b, &s);
    baton_vk_step_counts(b, two, &barriers[1]);
}

/* Reading ahead (BATON_VK_PREFETCH=1: 1 MiB, which reads most of the fixtures' matrices whole)
 * changes no bit: a sequence decoded token by token, then two tokens in one step, has the logits
 * it has without. Only one-token steps read ahead (at least once per product: more dispatches
 * there; as many in the two-token step). The setting is reported, and bad values refused. */
static void test_prefetch(const fixture_case *fc) {
    baton_model *m = NULL;
    baton_error err = {0};
    REQUIRE(baton_model_load(fc->model, NULL, &m, &err) == BATON_OK);
    int V = m->n_vocab, L = m->n_layer;
    float *logits[2] = {malloc((size_t)(ONES + 2) * V * 4), malloc((size_t)(ONES + 2) * V * 4)};
    REQUIRE(logits[0] && logits[1]);
    env_saved pf = env_save("BATON_VK_PREFETCH");
    setenv("BATON_VK_PREFETCH", "1", 1);
    baton_backend *b = open_backend(m, 0, L, 4);
    CHECK_MSG(strstr(baton_vk_tuning(b), "read ahead: 1 MiB (BATON_VK_PREFETCH)") != NULL,
              "BATON_VK_PREFETCH=1: %s", baton_vk_tuning(b));
    uint32_t one[2] = {0}, two[2] = {0}, barriers[2][2] = {{0}};
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) REQUIRE(baton_vk_prefetch_set(b, 0, &err) == BATON_OK);
        REQUIRE(baton_vk_prefetch_mib(b) == (pass == 0 ? 1u : 0u));
        one_then_two(b, fc, V, logits[pass], &one[pass], &two[pass], barriers[pass]);
    }
    CHECK_MSG(memcmp(logits[0], logits[1], (size_t)(ONES + 2) * V * 4) == 0,
              "%s: logits differ when reading ahead", fc->name);
    CHECK_MSG(one[0] >= one[1] + 4u * (uint32_t)L + 1u && two[0] == two[1] &&
                  barriers[0][0] == barriers[1][0] && barriers[0][1] == barriers[1][1],
              "%s: dispatches of a one-token step %u reading ahead, %u not; of a two-token step "
              "%u and %u", fc->name, one[0], one[1], two[0], two[1]);
    CHECK(baton_vk_prefetch_set(b, 65, &err) == BATON_ERR_ARG && baton_vk_prefetch_mib(b) == 0);
    baton_backend_free(b);
    check_refused(m, "BATON_VK_PREFETCH", "65");
    check_refused(m, "BATON_VK_PREFETCH", "lots");
    env_restore(&pf);
    printf("%s: reading ahead, %u dispatches a one-token step instead of %u; logits unchanged\n",
           fc->name, one[0], one[1]);
    free(logits[0]);
    free(logits[1]);
    baton_model_free(m);
}

/* Fusing (BATON_VK_FUSE): under every matvec configuration that stages x (the ones with LN and
 * WKV twins), one-token steps whose products compute their LayerNorms, WKV or both themselves
 * give bitwise the logits and state of the separate dispatches, with per layer one dispatch and
 * two barriers fewer (LayerNorms), one barrier fewer (WKV: its dispatch becomes the state's
 * save) or two dispatches and three barriers fewer (both); a two-token step, and a configuration
 * without twins, run as before. A bad value is refused up front. */
static void test_fuse(const fixture_case *fc) {
    baton_model *m = NULL;
    baton_error err = {0};
    REQUIRE(baton_model_load(fc->model, NULL, &m, &err) == BATON_OK);
    int V = m->n_vocab, L = m->n_layer;
    enum { ALL = ONES + 2 };
    size_t state_floats = (size_t)L * 5 * (size_t)m->n_embd;
    float *logits[2] = {malloc((size_t)ALL * V * 4), malloc((size_t)ALL * V * 4)};
    float *state[2] = {malloc(state_floats * 4), malloc(state_floats * 4)};
    REQUIRE(logits[0] && logits[1] && state[0] && state[1]);
    env_saved fuse = env_save("BATON_VK_FUSE");
    setenv("BATON_VK_FUSE", "1", 1);
    baton_backend *b = open_backend(m, 0, L, 4);
    CHECK_MSG(baton_vk_fuse(b) == (BATON_VK_FUSE_LN | BATON_VK_FUSE_WKV) &&
                  strstr(baton_vk_tuning(b), "fused: LayerNorms and WKV (BATON_VK_FUSE)") != NULL,
              "BATON_VK_FUSE=1: %s", baton_vk_tuning(b));
    /* Fewer dispatches and barriers per layer in a one-token step, by BATON_VK_FUSE_* flags. */
    static const uint32_t fewer[4] = {0, 1, 0, 2}, fewer_barriers[4] = {0, 2, 1, 3};
    static const char *const modes[4] = {"none", "LayerNorms", "WKV", "LayerNorms and WKV"};
    int checked = 0;
    for (int cfg = 0; cfg < baton_vk_matvec_count(); cfg++) {
        bool fuses = baton_vk_matvec_fuses(cfg);
        if (baton_vk_matvec_select(b, cfg, &err) != BATON_OK) continue; /* too little shared memory */
        const char *name = baton_vk_matvec_name(cfg);
        uint32_t one[2] = {0}, two[2] = {0}, barriers[2][2] = {{0}};
        baton_vk_fuse_set(b, 0);
        one_then_two(b, fc, V, logits[0], &one[0], &two[0], barriers[0]);
        slot_op_ok(b->ops->slot_read(b, 0, state[0], &err), &err);
        for (uint32_t f = 1; f < 4; f++) {
            baton_vk_fuse_set(b, f);
            one_then_two(b, fc, V, logits[1], &one[1], &two[1], barriers[1]);
            slot_op_ok(b->ops->slot_read(b, 0, state[1], &err), &err);
            CHECK_MSG(memcmp(logits[0], logits[1], (size_t)ALL * V * 4) == 0 &&
                          memcmp(state[0], state[1], state_floats * 4) == 0,
                      "%s, matvec %s, fused %s: logits or state differ", fc->name, name, modes[f]);
            uint32_t d = fuses ? fewer[f] * (uint32_t)L : 0;
            uint32_t db = fuses ? fewer_barriers[f] * (uint32_t)L : 0;
            CHECK_MSG(one[1] + d == one[0] && barriers[1][0] + db == barriers[0][0] && two[0] == two[1] &&
                          barriers[0][1] == barriers[1][1],
                      "%s, matvec %s, fused %s: a one-token step %u dispatches and %u barriers, %u "
                      "and %u apart; a two-token step %u and %u", fc->name, name, modes[f], one[1],
                      barriers[1][0], one[0], barriers[0][0], two[1], two[0]);
        }
        checked += fuses;
    }
    CHECK_MSG(checked >= 1, "%s: no matvec configuration that fuses ran", fc->name);
    REQUIRE(baton_vk_kernels_reset(b, &err) == BATON_OK);
    baton_backend_free(b);
    check_refused(m, "BATON_VK_FUSE", "2");
    check_refused(m, "BATON_VK_FUSE", "wkv,ln");
    env_restore(&fuse);
    printf("%s: LayerNorms, WKV and both fused under %d matvec configurations: logits and state "
           "unchanged, fewer dispatches and barriers\n", fc->name, checked);
    for (int i = 0; i < 2; i++) {
        free(logits[i]);
        free(state[i]);
    }
    baton_model_free(m);
}

/* Tuning (BATON_VK_TUNE=1) times each kind of matmul configuration the stage runs and keeps the
 * fastest, checking each one's results against the default's: what it reports names the kinds
 * max_tokens allows and no other, rejects nothing, and the tuned backend's logits are bitwise the
 * untuned one's. A bad value is refused up front. coop: the
 * caller set BATON_VK_COOPMAT, so the tensor-core path's kinds are tuned instead. */
static void test_tuning(const fixture_case *fc, bool coop) {
    baton_model *m = NULL;
    baton_error err = {0};
    REQUIRE(baton_model_load(fc->model, NULL, &m, &err) == BATON_OK);
    int V = m->n_vocab, n = 40;
    float *want = malloc((size_t)KINDS * V * 4), *got = malloc((size_t)KINDS * V * 4);
    REQUIRE(want && got);
    env_saved tune = env_save("BATON_VK_TUNE"), path = env_save("BATON_VK_COOPMAT");
    /* The default path alone: where tensor cores exist, tuning could otherwise choose them
     * (test_coop_auto). */
    if (!coop) setenv("BATON_VK_COOPMAT", "0", 1);
    setenv("BATON_VK_TUNE", "0", 1);
    baton_backend *b = open_backend(m, 0, m->n_layer, n);
    CHECK_MSG(strncmp(baton_vk_tuning(b), "not tuned", 9) == 0, "BATON_VK_TUNE=0: %s",
              baton_vk_tuning(b));
    every_kind(b, want);
    baton_backend_free(b);

    setenv("BATON_VK_TUNE", "1", 1);
    b = open_backend(m, 0, m->n_layer, n);
    const char *t = baton_vk_tuning(b);
    printf("%s%s: %s\n", fc->name, coop ? " (tensor-core path)" : "", t);
    const char *kinds[4] = {"matvec ", "8-token ", "32-token ", "64-token "};
    if (coop) {
        kinds[0] = "tensor-core few-token ";
        kinds[1] = "tensor-core many-token ";
        kinds[2] = kinds[3] = NULL;
    }
    CHECK_MSG(strncmp(t, "tuned in ", 9) == 0, "tuning did not run: %s", t);
    for (int i = 0; i < 4; i++)
        if (kinds[i] != NULL) CHECK_MSG(strstr(t, kinds[i]) != NULL, "no %s in: %s", kinds[i], t);
    CHECK_MSG(coop == (strstr(t, "matvec") == NULL), "the other path tuned too: %s", t);
    /* Tuning compares each configuration's results with the default's (test_vk_ops shows them
     * all bitwise equal here), so it may reject none. */
    CHECK_MSG(strstr(t, "NOT BITWISE") == NULL, "tuning found configurations that differ: %s", t);
    /* It chose how much to read ahead, timing whole one-token layers in slot 0, and left that
     * slot as fresh as slot 1. */
    CHECK_MSG(strstr(t, "read ahead: ") != NULL && strstr(t, "fused: ") != NULL &&
                  strstr(t, "untuned") == NULL,
              "no read-ahead or fusing choice: %s", t);
    size_t state_floats = (size_t)m->n_layer * BATON_STATE_ROWS * (size_t)m->n_embd;
    float *s0 = malloc(state_floats * 4), *s1 = malloc(state_floats * 4);
    REQUIRE(s0 && s1);
    slot_op_ok(b->ops->slot_read(b, 0, s0, &err), &err);
    slot_op_ok(b->ops->slot_read(b, 1, s1, &err), &err);
    CHECK_MSG(memcmp(s0, s1, state_floats * 4) == 0, "%s: tuning left slot 0 used", fc->name);
    free(s0);
    free(s1);
    every_kind(b, got);
    CHECK_MSG(memcmp(got, want, (size_t)KINDS * V * 4) == 0, "%s: tuned logits differ", fc->name);
    /* Back to the tuned choice after trying another: still the same bits. */
    if (!coop) REQUIRE(baton_vk_matvec_select(b, 1, &err) == BATON_OK);
    REQUIRE(baton_vk_kernels_reset(b, &err) == BATON_OK);
    every_kind(b, got);
    CHECK_MSG(memcmp(got, want, (size_t)KINDS * V * 4) == 0, "%s: logits differ after the reset", fc->name);
    baton_backend_free(b);

    /* A stage of at most 4 tokens a step never runs the many-token kernels: not timed. What
     * BATON_VK_PREFETCH pins, tuning keeps, fused LayerNorms timed or not. */
    env_saved pf = env_save("BATON_VK_PREFETCH");
    setenv("BATON_VK_PREFETCH", "2", 1);
    b = open_backend(m, 0, m->n_layer, 4);
    t = baton_vk_tuning(b);
    CHECK_MSG(strstr(t, coop ? "many-token" : "32-token") == NULL && strstr(t, "64-token") == NULL,
              "max_tokens 4 tuned: %s", t);
    CHECK_MSG(strstr(t, coop ? "few-token" : "8-token") != NULL, "max_tokens 4 tuned: %s", t);
    CHECK_MSG(baton_vk_prefetch_mib(b) == 2 && strstr(t, "read ahead: 2 MiB (BATON_VK_PREFETCH)") != NULL,
              "tuning did not keep the read-ahead pinned (%u MiB): %s", baton_vk_prefetch_mib(b), t);
    baton_backend_free(b);
    env_restore(&pf);

    check_refused(m, "BATON_VK_TUNE", "yes");
    env_restore(&tune);
    env_restore(&path);
    printf("%s: tuned logits bitwise equal to untuned ones\n", fc->name);
    free(want);
    free(got);
    baton_model_free(m);
}

/* every_kind's logits from a new backend under BATON_VK_COOPMAT=path, untuned; *active: whether
 * it runs the tensor cores. */
static void path_logits(const baton_model *m, const char *path, float *out, bool *active) {
    setenv("BATON_VK_TUNE", "0", 1);
    setenv("BATON_VK_COOPMAT", path, 1);
    baton_backend *b = open_backend(m, 0, m->n_layer, 40);
    bool ready = false;
    baton_vk_coopmat_state(b, &ready, active);
    every_kind(b, out);
    baton_backend_free(b);
}

/* The files in dir (their count); into path, one of them other than `besides` (NULL: any). */
static int dir_files(const char *dir, const char *besides, char *path, size_t n) {
    DIR *d = opendir(dir);
    REQUIRE(d != NULL);
    int count = 0;
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        count++;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (besides == NULL || strcmp(p, besides) != 0) snprintf(path, n, "%s", p);
    }
    closedir(d);
    return count;
}

/* Replaces the first `from` in the file with `to`; from "": keeps the file's first `to` lines
 * (a count, in decimal) and drops the rest. */
static void edit_file(const char *path, const char *from, const char *to) {
    FILE *f = fopen(path, "rb");
    REQUIRE(f != NULL);
    static char text[65536], out[65536];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    if (from[0] == '\0') {
        char *p = text;
        for (int lines = atoi(to); lines > 0 && p != NULL; lines--) p = strchr(p + 1, '\n');
        REQUIRE(p != NULL);
        p[1] = '\0';
        snprintf(out, sizeof out, "%s", text);
    } else {
        char *at = strstr(text, from);
        REQUIRE(at != NULL);
        *at = '\0';
        snprintf(out, sizeof out, "%s%s%s", text, to, at + strlen(from));
    }
    f = fopen(path, "wb");
    REQUIRE(f != NULL && fputs(out, f) >= 0 && fclose(f) == 0);
}

/* Tuning's choices kept between backends (BATON_VK_TUNE_CACHE): one started again with the
 * same device, build and stage runs them without timing anything, its logits bitwise the
 * first's, and says where they came from; the file's path line decides the path every matmul
 * runs on (the logits then bitwise that path's); another stage shape has a file of its own; a
 * file that names a configuration this build lacks, is not whole, or was made for another key
 * is never used (tuning runs again and writes it anew); "off" keeps nothing; a directory that
 * cannot be made costs only the keeping; a relative one is refused up front. fp32, coop:
 * every_kind's logits on each path, untuned (test_coop_auto's); real: the tensor cores are real;
 * got: room for as many. The caller puts BATON_VK_TUNE and BATON_VK_COOPMAT back. */
static void test_tune_cache(const fixture_case *fc, const baton_model *m, const float *fp32,
                            const float *coop, float *got, size_t bytes, bool real) {
    env_saved cache = env_save("BATON_VK_TUNE_CACHE");
    bool active = false, again = false, ready = false;
    char dir[] = "/tmp/baton-tune-XXXXXX", file[600] = "", choices[4096];
    REQUIRE(mkdtemp(dir) != NULL);
    setenv("BATON_VK_TUNE", "1", 1);
    setenv("BATON_VK_COOPMAT", real ? "auto" : "emulate-auto", 1);
    setenv("BATON_VK_TUNE_CACHE", dir, 1);
    baton_backend *b = open_backend(m, 0, m->n_layer, 40);
    const char *t = baton_vk_tuning(b);
    REQUIRE(dir_files(dir, NULL, file, sizeof file) == 1);
    const char *rest = strstr(t, "): ");
    CHECK_MSG(strncmp(t, "tuned in ", 9) == 0 && strstr(t, " (kept in ") != NULL &&
              strstr(t, file) != NULL && rest != NULL, "not kept in %s: %s", file, t);
    snprintf(choices, sizeof choices, "%s", rest != NULL ? rest + 3 : "");
    baton_vk_coopmat_state(b, &ready, &active);
    every_kind(b, got);
    CHECK_MSG(memcmp(got, active ? coop : fp32, bytes) == 0, "tuned logits not the path's");
    baton_backend_free(b);

    /* Started again: the same choices, not timed, the same bits. */
    b = open_backend(m, 0, m->n_layer, 40);
    t = baton_vk_tuning(b);
    rest = strstr(t, ".txt: ");
    CHECK_MSG(strstr(t, ", kept in ") != NULL && rest != NULL && strcmp(rest + 6, choices) == 0,
              "not the kept choices: %s", t);
    baton_vk_coopmat_state(b, &ready, &again);
    CHECK(again == active);
    every_kind(b, got);
    CHECK_MSG(memcmp(got, active ? coop : fp32, bytes) == 0, "the kept choices' logits differ");
    baton_backend_free(b);

    /* The path the file names is the one that runs. */
    edit_file(file, active ? "path tensor-cores" : "path fp32", active ? "path fp32" : "path tensor-cores");
    b = open_backend(m, 0, m->n_layer, 40);
    baton_vk_coopmat_state(b, &ready, &again);
    CHECK_MSG(again == !active && strstr(baton_vk_tuning(b), ", kept in ") != NULL,
              "the file's path not taken: %s", baton_vk_tuning(b));
    every_kind(b, got);
    CHECK_MSG(memcmp(got, !active ? coop : fp32, bytes) == 0, "not the logits of the file's path");
    baton_backend_free(b);

    /* Files not to use, each timed anew and written whole again; on the fp32 path and a stage
     * of at most 4 tokens a step (quick to tune), which has a file of its own. */
    setenv("BATON_VK_COOPMAT", "0", 1);
    baton_backend_free(open_backend(m, 0, m->n_layer, 4));
    char small[sizeof file];
    REQUIRE(dir_files(dir, file, small, sizeof small) == 2);
    const char *breaks[3][3] = {{"start matvec ", "start matvec 0 wr99 u99\nstart matvec ",
                                 "line 4: wr99 u99 is no matvec configuration"},
                                {"", "5", "not whole (no mm32 configuration)"},
                                {"\nkey v", "\nkey x", "made for another"}};
    for (int i = 0; i < 3; i++) {
        edit_file(small, breaks[i][0], breaks[i][1]);
        b = open_backend(m, 0, m->n_layer, 4);
        t = baton_vk_tuning(b);
        CHECK_MSG(strstr(t, "the file there was not used: ") != NULL && strstr(t, breaks[i][2]) != NULL,
                  "a broken file (%s) used: %s", breaks[i][2], t);
        baton_backend_free(b);
        b = open_backend(m, 0, m->n_layer, 4);
        CHECK_MSG(strstr(baton_vk_tuning(b), ", kept in ") != NULL, "not written anew: %s",
                  baton_vk_tuning(b));
        baton_backend_free(b);
    }
    CHECK(dir_files(dir, NULL, small, sizeof small) == 2);
    setenv("BATON_VK_TUNE_CACHE", "off", 1);
    b = open_backend(m, 0, m->n_layer, 4);
    CHECK_MSG(strstr(baton_vk_tuning(b), "kept") == NULL, "off: %s", baton_vk_tuning(b));
    baton_backend_free(b);
    setenv("BATON_VK_TUNE_CACHE", "/proc/baton/tuning", 1);
    b = open_backend(m, 0, m->n_layer, 4);
    CHECK_MSG(strstr(baton_vk_tuning(b), " (not kept: cannot make /proc/baton") != NULL,
              "an unmakeable directory: %s", baton_vk_tuning(b));
    baton_backend_free(b);
    check_refused(m, "BATON_VK_TUNE_CACHE", "relative/dir");

    while (dir_files(dir, NULL, file, sizeof file) > 0) REQUIRE(unlink(file) == 0);
    rmdir(dir);
    env_restore(&cache);
    printf("%s: tuning kept and run again bitwise (%s path), its path taken from the file, broken "
           "files timed anew\n", fc->name, active ? "tensor-core" : "fp32");
}

/* BATON_VK_COOPMAT unset (or auto): once the fp32 path is tuned, tuning holds the tensor cores'
 * results to it and times them, and runs every matmul on them when they are clearly faster.
 * The choice is whole and said: every kind of step then runs on the path the tuning names, so
 * the logits are bitwise that path's untuned ones. With the emulated variants (emulate-auto)
 * where the device has no tensor cores. What tuning chose is kept for the next backend
 * (test_tune_cache). A bad value is refused before anything is uploaded (and one of
 * BATON_VK_SAMPLE_FEW too). */
static void test_coop_auto(const fixture_case *fc) {
    baton_model *m = NULL;
    baton_error err = {0};
    REQUIRE(baton_model_load(fc->model, NULL, &m, &err) == BATON_OK);
    size_t bytes = (size_t)KINDS * m->n_vocab * 4;
    float *fp32 = malloc(bytes), *coop = malloc(bytes), *got = malloc(bytes);
    REQUIRE(fp32 && coop && got);
    env_saved tune = env_save("BATON_VK_TUNE"), path = env_save("BATON_VK_COOPMAT");
    bool active = false, real = false;
    path_logits(m, "0", fp32, &active);
    CHECK(!active);
    path_logits(m, "1", coop, &real);
    if (!real) path_logits(m, "emulate", coop, &active);
    CHECK_MSG(memcmp(fp32, coop, bytes) != 0, "the two paths gave the same bits: nothing to tell apart");

    setenv("BATON_VK_TUNE", "1", 1);
    setenv("BATON_VK_COOPMAT", real ? "auto" : "emulate-auto", 1);
    baton_backend *b = open_backend(m, 0, m->n_layer, 72); /* past 64: the large kind too */
    const char *t = baton_vk_tuning(b);
    bool ready = false;
    baton_vk_coopmat_state(b, &ready, &active);
    printf("%s (%s): %s\n", fc->name, real ? "auto" : "emulate-auto", t);
    CHECK_MSG(strstr(t, "tensor cores within ") != NULL, "the tensor cores not held to fp32: %s", t);
    CHECK_MSG(strstr(t, "tensor-core many-token ") != NULL && strstr(t, "tensor-core large ") != NULL &&
              strstr(t, "64-token ") != NULL, "both paths not tuned: %s", t);
    CHECK_MSG(strstr(t, active ? "path: tensor cores (the tensor cores, timed side by side, "
                               : "path: fp32 (the tensor cores, timed side by side, ")
              != NULL, "the path in use (%s) is not the one named: %s", active ? "tensor cores" : "fp32", t);
    every_kind(b, got);
    CHECK_MSG(memcmp(got, active ? coop : fp32, bytes) == 0, "%s: logits are not bitwise those of "
              "the %s path", fc->name, active ? "tensor-core" : "fp32");
    baton_backend_free(b);

    test_tune_cache(fc, m, fp32, coop, got, bytes, real);
    check_refused(m, "BATON_VK_COOPMAT", "yes");
    env_saved few = env_save("BATON_VK_SAMPLE_FEW");
    check_refused(m, "BATON_VK_SAMPLE_FEW", "513");
    env_restore(&few);
    env_restore(&tune);
    env_restore(&path);
    printf("%s: auto chose the %s path, logits bitwise its own\n", fc->name,
           active ? "tensor-core" : "fp32");
    free(fp32);
    free(coop);
    free(got);
    baton_model_free(m);
}

/* Three streams with their own chunk schedules; alone, then together in shared steps (the third
 * joins late). Each chunk's last-token logits must be bitwise the same. */
static void test_streams(const fixture_case *fc, int n_max) {
    baton_model *m = NULL;
    baton_error err = {0};
    REQUIRE(baton_model_load(fc->model, NULL, &m, &err) == BATON_OK);
    int V = m->n_vocab;
    enum { NS = 3, CHUNKS = 64 };
    int n = fc->n_tokens < n_max ? fc->n_tokens : n_max;
    int32_t toks[NS][CASE_TOKENS_MAX];
    int len[NS] = {n, n / 2 + 1, n - 2 > 1 ? n - 2 : 1};
    for (int i = 0; i < len[0]; i++) toks[0][i] = fc->tokens[i];
    for (int i = 0; i < len[1]; i++) toks[1][i] = fc->tokens[n - 1 - i];
    for (int i = 0; i < len[2]; i++) toks[2][i] = (fc->tokens[(i + 2) % n] * 7 + i) % V;
    /* Schedules: stream 0 one token at a time; 1 a prefill of 5 then singles; 2 chunks of 3. */
    int sched[NS][CHUNKS], n_chunks[NS] = {0};
    for (int si = 0; si < NS; si++) {
        int left = len[si];
        while (left > 0) {
            int c = si == 0 ? 1 : si == 1 ? (n_chunks[si] == 0 ? 5 : 1) : 3;
            if (c > left) c = left;
            if (n_chunks[si] == CHUNKS - 1) c = left;
            sched[si][n_chunks[si]++] = c;
            left -= c;
        }
    }
    baton_backend *b = open_backend(m, 0, m->n_layer, 16);
    float *solo = calloc((size_t)NS * CHUNKS * V, 4), *got = malloc((size_t)NS * V * 4);
    REQUIRE(solo && got);
    for (int si = 0; si < NS; si++) {
        slot_op_ok(b->ops->slot_reset(b, si, &err), &err);
        int pos = 0;
        for (int c = 0; c < n_chunks[si]; c++) {
            baton_seq q = {.slot = si, .n_tokens = sched[si][c]};
            baton_step s = {.n_seqs = 1, .seqs = &q, .tokens = &toks[si][pos],
                            .logits = solo + ((size_t)si * CHUNKS + (size_t)c) * V};
            step_ok(b, &s);
            pos += sched[si][c];
        }
    }
    /* Together: stream si uses slot 3 - si (a different slot than alone); stream 2 joins at step 2. */
    for (int si = 0; si < NS; si++) slot_op_ok(b->ops->slot_reset(b, 3 - si, &err), &err);
    int next[NS] = {0}, pos[NS] = {0}, mismatches = 0, steps = 0;
    for (;;) {
        baton_seq seqs[NS];
        int32_t tokens[64];
        int who[NS], ns = 0, nt = 0;
        for (int si = NS - 1; si >= 0; si--) { /* reversed order: positions in the batch change */
            if (next[si] >= n_chunks[si] || (si == 2 && steps < 2)) continue;
            int c = sched[si][next[si]];
            seqs[ns] = (baton_seq){.slot = 3 - si, .n_tokens = c};
            memcpy(&tokens[nt], &toks[si][pos[si]], (size_t)c * 4);
            nt += c;
            who[ns++] = si;
        }
        if (ns == 0) break;
        baton_step s = {.n_seqs = ns, .seqs = seqs, .tokens = tokens, .logits = got};
        step_ok(b, &s);
        for (int i = 0; i < ns; i++) {
            int si = who[i];
            const float *want = solo + ((size_t)si * CHUNKS + (size_t)next[si]) * V;
            if (memcmp(got + (size_t)i * V, want, (size_t)V * 4) != 0) mismatches++;
            pos[si] += sched[si][next[si]];
            next[si]++;
        }
        steps++;
    }
    printf("%s: %d streams in %d shared steps: %d chunk(s) differ bitwise from their solo runs\n",
           fc->name, NS, steps, mismatches);
    CHECK_MSG(mismatches == 0, "%s: batch invariance broken in %d chunk(s)", fc->name, mismatches);
    free(solo);
    free(got);
    baton_backend_free(b);
    baton_model_free(m);
}

/* Layers [0, L/2) with the embedding, then [L/2, L) with the head, on the same device twice:
 * logits and state bitwise equal to one backend running all layers. */
static void test_slices(const fixture_case *fc, int n_tokens) {
    baton_model *m = NULL;
    baton_error err = {0};
    REQUIRE(baton_model_load(fc->model, NULL, &m, &err) == BATON_OK);
    int V = m->n_vocab, C = m->n_embd, L = m->n_layer, half = L / 2;
    baton_backend *whole = open_backend(m, 0, L, 4), *first = open_backend(m, 0, half, 4),
                  *second = open_backend(m, half, L, 4);
    float *a = malloc((size_t)V * 4), *bl = malloc((size_t)V * 4), *x = malloc((size_t)C * 4);
    float *sw = malloc((size_t)L * 5 * C * 4), *ss = malloc((size_t)L * 5 * C * 4);
    REQUIRE(a && bl && x && sw && ss);
    int mismatches = 0;
    for (int t = 0; t < n_tokens; t++) {
        baton_seq q = {.slot = 1, .n_tokens = 1};
        baton_step s = {.n_seqs = 1, .seqs = &q, .tokens = &fc->tokens[t], .logits = a};
        step_ok(whole, &s);
        baton_step s1 = {.n_seqs = 1, .seqs = &q, .tokens = &fc->tokens[t], .x_out = x};
        step_ok(first, &s1);
        baton_step s2 = {.n_seqs = 1, .seqs = &q, .x_in = x, .logits = bl};
        step_ok(second, &s2);
        mismatches += memcmp(a, bl, (size_t)V * 4) != 0;
    }
    slot_op_ok(whole->ops->slot_read(whole, 1, sw, &err), &err);
    slot_op_ok(first->ops->slot_read(first, 1, ss, &err), &err);
    slot_op_ok(second->ops->slot_read(second, 1, ss + (size_t)half * 5 * C, &err), &err);
    printf("%s: layers [0,%d) + [%d,%d): %d of %d tokens' logits differ from one stage\n", fc->name,
           half, half, L, mismatches, n_tokens);
    CHECK_MSG(mismatches == 0, "%s: two slices differ from one run", fc->name);
    CHECK_MSG(memcmp(sw, ss, (size_t)L * 5 * C * 4) == 0, "%s: sliced state differs", fc->name);
    free(a);
    free(bl);
    free(x);
    free(sw);
    free(ss);
    baton_backend_free(second);
    baton_backend_free(first);
    baton_backend_free(whole);
    baton_model_free(m);
}

/* Every case again with every matmul on the tensor-core path: the real one where the device has
 * it, else its emulation (the same staging, segments and order of sums, the products in fp32). */
static void test_coopmat(const fixture_case *cases, int n) {
    setenv("BATON_VK_COOPMAT", "1", 1);
    baton_model *m = NULL;
    baton_error err = {0};
    REQUIRE(baton_model_load(cases[0].model, NULL, &m, &err) == BATON_OK);
    baton_backend *b = open_backend(m, 0, m->n_layer, 4);
    bool ready = false, active = false;
    char why[200];
    snprintf(why, sizeof why, "%s", baton_vk_coopmat_state(b, &ready, &active));
    baton_backend_free(b);
    baton_model_free(m);
    if (!active) {
        printf("== coopmat: no tensor cores here (%s): the emulated variants instead\n",
               why[0] ? why : "not active");
        setenv("BATON_VK_COOPMAT", "emulate", 1);
    } else {
        printf("== coopmat: BATON_VK_COOPMAT=1, every matmul on the tensor cores\n");
    }
    char last_model[512] = "";
    for (int i = 0; i < n; i++) {
        const fixture_case *fc = &cases[i];
        bool first_of_model = strcmp(last_model, fc->model) != 0;
        snprintf(last_model, sizeof last_model, "%s", fc->model);
        test_case(fc, fc->n_tokens);
        if (first_of_model) test_streams(fc, 24);
    }
    test_tuning(&cases[0], true);
    unsetenv("BATON_VK_COOPMAT");
}

int main(void) {
    vk_test_require_device();
    /* Tuning times afresh here, and keeps nothing, but where test_tune_cache asks. */
    setenv("BATON_VK_TUNE_CACHE", "off", 1);
    const char *dir = test_fixtures();
    static fixture_case cases[CASES_MAX];
    int n = fixture_cases_load(dir, cases);
    REQUIRE(n > 0);
    bool small = vk_test_small();
    char last_model[512] = "";
    for (int i = 0; i < n; i++) {
        const fixture_case *fc = &cases[i];
        bool first_of_model = strcmp(last_model, fc->model) != 0;
        snprintf(last_model, sizeof last_model, "%.500s", fc->model);
        if (small && !first_of_model) continue;
        int nt = small && fc->n_tokens > 6 ? 6 : fc->n_tokens;
        test_case(fc, nt);
        if (i == 0) test_replay_stale(fc);
        if (i == 0) test_profile(fc);
        if (i == 0) test_prefetch(fc);
        if (i == 0) test_tuning(fc, false);
        if (i == 0) test_coop_auto(fc);
        if (first_of_model) {
            test_fuse(fc);
            test_streams(fc, small ? 8 : 24);
            test_slices(fc, small ? 3 : 8);
        }
    }
    if (!small) test_coopmat(cases, n);
    return vk_test_result();
}
