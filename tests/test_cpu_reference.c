/* The CPU reference against the fixtures: every case token by token and as one prefill, the
 * state after it, rwkv.cpp's own logits, streams sharing steps, a model split into two
 * consecutive layer slices, and steps cut into groups of pieces on any number of threads. */
#include "backend.h"
#include "fixture_cases.h"

static baton_backend *backend_open(const baton_model *m, int begin, int end, int slots,
                                   int max_tokens) {
    baton_stage_config cfg = {
        .layer_begin = begin, .layer_end = end,
        .with_embedding = begin == 0, .with_head = end == m->n_layer,
        .n_slots = slots, .max_seqs = slots, .max_tokens = max_tokens,
    };
    baton_backend *b = NULL;
    baton_error err = {0};
    if (baton_cpu_backend_new(m, &cfg, &b, &err) != BATON_OK) {
        fprintf(stderr, "cpu backend: %s\n", err.msg);
        exit(1);
    }
    return b;
}

static void step_or_die(baton_backend *b, const baton_step *s) {
    baton_error err = {0};
    if (baton_backend_step(b, s, &err) != BATON_OK) {
        fprintf(stderr, "step: %s\n", err.msg);
        exit(1);
    }
}

static void check_case(const fixture_case *fc) {
    baton_model *m = NULL;
    baton_error err = {0};
    REQUIRE(baton_model_load(fc->model, NULL, &m, &err) == BATON_OK);
    CHECK(m->n_layer == fc->n_layer && m->n_embd == fc->n_embd && m->n_vocab == fc->n_vocab);
    int V = m->n_vocab, T = fc->n_tokens;
    float *ref = fixture_floats(fc->logits, (size_t)T * V);
    size_t state_n = (size_t)m->n_layer * 5 * m->n_embd;
    float *ref_state = fixture_floats(fc->state, state_n);
    float *logits = malloc((size_t)T * V * sizeof(float));
    float *state = malloc(state_n * sizeof(float));

    /* Token by token. */
    baton_backend *b = backend_open(m, 0, m->n_layer, 1, T);
    for (int t = 0; t < T; t++) {
        baton_seq seq = {0, 1};
        baton_step s = {.n_seqs = 1, .seqs = &seq, .tokens = &fc->tokens[t], .logits = logits + (size_t)t * V};
        step_or_die(b, &s);
    }
    double d = max_abs_diff(logits, ref, (size_t)T * V);
    CHECK_MSG(d <= CPU_BOUND, "%s token by token: logits differ by %g", fc->name, d);
    REQUIRE(b->ops->slot_read(b, 0, state, &err) == BATON_OK);
    d = state_diff(state, ref_state, m->n_layer, m->n_embd);
    CHECK_MSG(d <= CPU_BOUND, "%s token by token: state differs by %g", fc->name, d);

    /* Prefill: all tokens as one sequence, only the last logits. */
    REQUIRE(b->ops->slot_reset(b, 0, &err) == BATON_OK);
    baton_seq seq = {0, T};
    baton_step s = {.n_seqs = 1, .seqs = &seq, .tokens = fc->tokens, .logits = logits};
    step_or_die(b, &s);
    d = max_abs_diff(logits, ref + (size_t)(T - 1) * V, (size_t)V);
    CHECK_MSG(d <= CPU_BOUND, "%s prefill: logits differ by %g", fc->name, d);
    REQUIRE(b->ops->slot_read(b, 0, state, &err) == BATON_OK);
    d = state_diff(state, ref_state, m->n_layer, m->n_embd);
    CHECK_MSG(d <= CPU_BOUND, "%s prefill: state differs by %g", fc->name, d);

    /* Prefill with every row: the logits after each token in one step. */
    REQUIRE(b->ops->slot_reset(b, 0, &err) == BATON_OK);
    s.logits_all_tokens = true;
    step_or_die(b, &s);
    d = max_abs_diff(logits, ref, (size_t)T * V);
    CHECK_MSG(d <= CPU_BOUND, "%s prefill, all rows: logits differ by %g", fc->name, d);
    baton_backend_free(b);

    /* Two slices, the hidden state handed from one to the next, give the same logits. */
    if (m->n_layer >= 2) {
        int cut = m->n_layer / 2;
        baton_backend *first = backend_open(m, 0, cut, 1, T), *second = backend_open(m, cut, m->n_layer, 1, T);
        float *x = malloc((size_t)T * m->n_embd * sizeof(float));
        baton_step s1 = {.n_seqs = 1, .seqs = &seq, .tokens = fc->tokens, .x_out = x};
        baton_step s2 = {.n_seqs = 1, .seqs = &seq, .x_in = x, .logits = logits, .logits_all_tokens = true};
        step_or_die(first, &s1);
        step_or_die(second, &s2);
        d = max_abs_diff(logits, ref, (size_t)T * V);
        CHECK_MSG(d <= CPU_BOUND, "%s in two slices: logits differ by %g", fc->name, d);
        free(x);
        baton_backend_free(first);
        baton_backend_free(second);
    }
    free(logits);
    free(state);
    free(ref);
    free(ref_state);
    baton_model_free(m);
}

/* Streams of different lengths in shared steps give each stream its solo logits, bitwise. */
static void check_shared_steps(const fixture_case *fc) {
    baton_model *m = NULL;
    baton_error err = {0};
    REQUIRE(baton_model_load(fc->model, NULL, &m, &err) == BATON_OK);
    int V = m->n_vocab, T = fc->n_tokens < 12 ? fc->n_tokens : 12;
    enum { STREAMS = 3 };
    int lens[STREAMS] = {T, T / 2, 1};
    float *solo = malloc((size_t)T * V * sizeof(float)), *shared = malloc((size_t)STREAMS * T * V * sizeof(float));
    baton_backend *b = backend_open(m, 0, m->n_layer, STREAMS, STREAMS);
    for (int t = 0; t < T; t++) {
        baton_seq seqs[STREAMS];
        int32_t toks[STREAMS];
        int n = 0;
        for (int i = 0; i < STREAMS; i++) {
            if (t >= lens[i]) continue;
            seqs[n] = (baton_seq){i, 1};
            toks[n++] = fc->tokens[(t + 5 * i) % fc->n_tokens];
        }
        float rows[STREAMS * 512];
        REQUIRE(V <= 512);
        baton_step s = {.n_seqs = n, .seqs = seqs, .tokens = toks, .logits = rows};
        step_or_die(b, &s);
        for (int j = 0; j < n; j++) memcpy(shared + ((size_t)seqs[j].slot * T + t) * V, rows + (size_t)j * V, V * sizeof(float));
    }
    baton_backend_free(b);
    for (int i = 0; i < STREAMS; i++) {
        b = backend_open(m, 0, m->n_layer, 1, 1);
        for (int t = 0; t < lens[i]; t++) {
            baton_seq seq = {0, 1};
            int32_t tok = fc->tokens[(t + 5 * i) % fc->n_tokens];
            baton_step s = {.n_seqs = 1, .seqs = &seq, .tokens = &tok, .logits = solo + (size_t)t * V};
            step_or_die(b, &s);
        }
        CHECK_MSG(memcmp(solo, shared + (size_t)i * T * V, (size_t)lens[i] * V * sizeof(float)) == 0,
                  "%s stream %d: shared-step logits differ from its solo run", fc->name, i);
        baton_backend_free(b);
    }
    free(solo);
    free(shared);
    baton_model_free(m);
}

/* A step of sequences longer and shorter than a group (64 tokens), run on 1, 2 and 5 threads,
 * gives each sequence's logits after every token, its state and its sampled token bitwise as
 * that sequence run alone token by token on one thread with the portable kernels
 * (BATON_CPU_SIMD=0; the step runs on the AVX2 ones where the CPU has them). */
static void check_groups(const fixture_case *fc) {
    baton_model *m = NULL;
    baton_error err = {0};
    REQUIRE(baton_model_load(fc->model, NULL, &m, &err) == BATON_OK);
    enum { SEQS = 4, TOKENS = 70 + 3 + 1 + 40 };
    const int lens[SEQS] = {70, 3, 1, 40};
    int V = m->n_vocab;
    size_t state_n = (size_t)m->n_layer * 5 * m->n_embd;
    int32_t toks[TOKENS];
    baton_seq seqs[SEQS];
    baton_sampling sampling[SEQS];
    for (int i = 0, at = 0; i < SEQS; at += lens[i], i++) {
        seqs[i] = (baton_seq){3 - i, lens[i]}; /* slots in another order than the sequences */
        for (int t = 0; t < lens[i]; t++) toks[at + t] = fc->tokens[(t + 5 * i) % fc->n_tokens];
        sampling[i] = (baton_sampling){.temperature = 0.8f, .top_p = 0.9f, .uniform = 0.1f + 0.2f * (float)i};
    }
    float *solo = malloc((size_t)TOKENS * V * sizeof(float)), *solo_state = malloc(SEQS * state_n * sizeof(float));
    float *logits = malloc((size_t)TOKENS * V * sizeof(float)), *state = malloc(state_n * sizeof(float));
    int32_t solo_out[SEQS], out[SEQS];
    baton_stage_config cfg = {0, m->n_layer, true, true, SEQS, SEQS, 128};
    setenv("BATON_CPU_SIMD", "0", 1);
    for (int i = 0, at = 0; i < SEQS; at += lens[i], i++) {
        baton_backend *b = NULL;
        REQUIRE(baton_cpu_backend_new_threads(m, &cfg, 1, &b, &err) == BATON_OK);
        for (int t = 0; t < lens[i]; t++) {
            baton_seq one = {0, 1};
            bool last = t == lens[i] - 1;
            baton_step s = {.n_seqs = 1, .seqs = &one, .tokens = &toks[at + t],
                            .logits = solo + (size_t)(at + t) * V, .sampling = last ? &sampling[i] : NULL,
                            .tokens_out = &solo_out[i]};
            step_or_die(b, &s);
        }
        REQUIRE(b->ops->slot_read(b, 0, solo_state + i * state_n, &err) == BATON_OK);
        baton_backend_free(b);
    }
    unsetenv("BATON_CPU_SIMD");
    const int threads[] = {1, 2, 5};
    for (int n = 0; n < 3; n++) {
        baton_backend *b = NULL;
        REQUIRE(baton_cpu_backend_new_threads(m, &cfg, threads[n], &b, &err) == BATON_OK);
        baton_step s = {.n_seqs = SEQS, .seqs = seqs, .tokens = toks, .logits = logits,
                        .logits_all_tokens = true, .sampling = sampling, .tokens_out = out};
        step_or_die(b, &s);
        CHECK_MSG(memcmp(logits, solo, (size_t)TOKENS * V * sizeof(float)) == 0,
                  "%s, %d threads: a step of 4 sequences in groups differs from their solo logits",
                  fc->name, threads[n]);
        for (int i = 0; i < SEQS; i++) {
            REQUIRE(b->ops->slot_read(b, seqs[i].slot, state, &err) == BATON_OK);
            CHECK_MSG(memcmp(state, solo_state + i * state_n, state_n * sizeof(float)) == 0,
                      "%s, %d threads: sequence %d's state differs from its solo run", fc->name,
                      threads[n], i);
            CHECK_MSG(out[i] == solo_out[i], "%s, %d threads: sequence %d sampled %d, alone %d",
                      fc->name, threads[n], i, out[i], solo_out[i]);
        }
        /* Only the last token's row of each, into its own place. */
        for (int i = 0; i < SEQS; i++) REQUIRE(b->ops->slot_reset(b, i, &err) == BATON_OK);
        s.logits_all_tokens = false;
        s.sampling = NULL;
        step_or_die(b, &s);
        for (int i = 0, at = 0; i < SEQS; at += lens[i], i++)
            CHECK_MSG(memcmp(logits + (size_t)i * V, solo + (size_t)(at + lens[i] - 1) * V, V * sizeof(float)) == 0,
                      "%s, %d threads: sequence %d's last logits differ from its solo run", fc->name,
                      threads[n], i);
        baton_backend_free(b);
    }
    free(solo);
    free(solo_state);
    free(logits);
    free(state);
    baton_model_free(m);
}

static void check_upstream(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tiny-rwkv4-660K/model.fp32.pth", dir);
    baton_model *m = NULL;
    baton_error err = {0};
    REQUIRE(baton_model_load(path, NULL, &m, &err) == BATON_OK);
    snprintf(path, sizeof path, "%s/tiny-rwkv4-660K/upstream-expected-logits.f32", dir);
    float *ref = fixture_floats(path, 256);
    baton_backend *b = backend_open(m, 0, m->n_layer, 1, 3);
    int32_t toks[3] = {34, 105, 110};
    baton_seq seq = {0, 3};
    float logits[256];
    baton_step s = {.n_seqs = 1, .seqs = &seq, .tokens = toks, .logits = logits};
    step_or_die(b, &s);
    double d = max_abs_diff(logits, ref, 256);
    CHECK_MSG(d <= 1e-4, "rwkv.cpp's expected logits differ by %g", d);
    baton_backend_free(b);
    free(ref);
    baton_model_free(m);
}

int main(void) {
    const char *dir = test_fixtures();
    static fixture_case cases[CASES_MAX];
    int n = fixture_cases_load(dir, cases);
    CHECK(n >= 7);
    for (int i = 0; i < n; i++) {
        check_case(&cases[i]);
        printf("%s: ok\n", cases[i].name);
    }
    check_shared_steps(&cases[n - 1]);
    check_groups(&cases[n - 1]);
    check_upstream(dir);
    return test_result();
}
