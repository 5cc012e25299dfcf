/* The sampler: greedy and its ties, penalties, top-k, top-p, the draw's distribution, seeded
 * repeatability and range checks. */
#include <stdbool.h>

#include "check.h"
#include "sampler.h"

enum { V = 6 };

static int32_t draw(const float *logits, const baton_sampling *p, const uint32_t *counts) {
    static unsigned char scratch[4096];
    REQUIRE(baton_sample_scratch_bytes(V) <= sizeof scratch);
    return baton_sample(logits, V, p, counts, scratch);
}

int main(void) {
    const float logits[V] = {1.0f, 3.0f, 3.0f, 0.5f, -2.0f, 2.0f};
    baton_sampling greedy = {.temperature = 0.0f, .top_p = 1.0f};
    CHECK(draw(logits, &greedy, NULL) == 1); /* lowest id among the tied maxima */

    /* A presence penalty on token 1 hands the argmax to 2; frequency scales with the count. */
    uint32_t counts[V] = {0, 1, 0, 0, 0, 0};
    greedy.presence_penalty = 0.5f;
    CHECK(draw(logits, &greedy, counts) == 2);
    greedy.presence_penalty = 0.0f;
    greedy.frequency_penalty = 0.4f;
    counts[1] = 0;
    counts[2] = 3; /* 3 - 1.2 = 1.8 < 2.0 of token 5 */
    CHECK(draw(logits, &greedy, counts) == 1);
    counts[1] = 2; /* 3 - 0.8 = 2.2: still above token 5 */
    CHECK(draw(logits, &greedy, counts) == 1);
    counts[1] = 5; /* 3 - 2.0 = 1.0: token 5 (2.0) wins */
    CHECK(draw(logits, &greedy, counts) == 5);

    /* top_k 1 is greedy whatever the draw. */
    baton_sampling p = {.temperature = 1.0f, .top_k = 1, .top_p = 1.0f};
    for (int i = 0; i < 10; i++) {
        p.uniform = (float)i / 10.0f;
        CHECK(draw(logits, &p, NULL) == 1);
    }

    /* top_k 3 keeps {1, 2, 5}; top_p keeps the shortest prefix with enough mass. */
    p.top_k = 3;
    for (int i = 0; i < 100; i++) {
        p.uniform = (float)i / 100.0f;
        int32_t t = draw(logits, &p, NULL);
        CHECK(t == 1 || t == 2 || t == 5);
    }
    p.top_k = 0;
    p.top_p = 0.5f; /* p(1) = p(2) ~ 0.38 each: the two of them are needed */
    bool seen[V] = {false};
    for (int i = 0; i < 100; i++) {
        p.uniform = (float)i / 100.0f;
        seen[draw(logits, &p, NULL)] = true;
    }
    CHECK(seen[1] && seen[2] && !seen[0] && !seen[3] && !seen[4] && !seen[5]);

    /* Uniform draws over [0, 1) reproduce the softmax: a stratified sweep counts each token's share. */
    p.top_p = 1.0f;
    double z = 0.0, expect[V];
    for (int i = 0; i < V; i++) z += exp(logits[i]);
    for (int i = 0; i < V; i++) expect[i] = exp(logits[i]) / z;
    int hits[V] = {0};
    enum { N = 100000 };
    for (int i = 0; i < N; i++) {
        p.uniform = ((float)i + 0.5f) / (float)N;
        hits[draw(logits, &p, NULL)]++;
    }
    for (int i = 0; i < V; i++)
        CHECK_MSG(fabs(hits[i] / (double)N - expect[i]) < 1e-3, "token %d: %g vs %g", i, hits[i] / (double)N, expect[i]);

    /* Temperature sharpens: at 0.1 the two tied maxima take nearly everything. */
    p.temperature = 0.1f;
    p.uniform = 0.999f;
    int32_t t = draw(logits, &p, NULL);
    CHECK(t == 1 || t == 2);

    /* The same seed gives the same draws; another seed does not. */
    baton_rng a, b, c;
    baton_rng_seed(&a, 42);
    baton_rng_seed(&b, 42);
    baton_rng_seed(&c, 43);
    bool same = true, differ = false;
    for (int i = 0; i < 100; i++) {
        float x = baton_rng_uniform(&a), y = baton_rng_uniform(&b), w = baton_rng_uniform(&c);
        same = same && x == y;
        differ = differ || x != w;
        CHECK(x >= 0.0f && x < 1.0f);
    }
    CHECK(same && differ);

    /* Out-of-range parameters are refused with a message. */
    baton_error err = {0};
    baton_sampling bad = {.temperature = -1.0f, .top_p = 1.0f};
    CHECK(baton_sampling_check(&bad, &err) == BATON_ERR_ARG && strstr(err.msg, "temperature"));
    bad = (baton_sampling){.temperature = 1.0f, .top_p = 0.0f};
    CHECK(baton_sampling_check(&bad, &err) == BATON_ERR_ARG && strstr(err.msg, "top_p"));
    bad = (baton_sampling){.temperature = NAN, .top_p = 1.0f};
    CHECK(baton_sampling_check(&bad, &err) == BATON_ERR_ARG);
    bad = (baton_sampling){.temperature = 1.0f, .top_p = 1.0f, .uniform = 1.0f};
    CHECK(baton_sampling_check(&bad, &err) == BATON_ERR_ARG);
    return test_result();
}
