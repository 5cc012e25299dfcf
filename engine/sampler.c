#include "sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

baton_status baton_sampling_check(const baton_sampling *p, baton_error *err) {
    if (!(p->temperature >= 0.0f && p->temperature <= 100.0f))
        return baton_fail(err, BATON_ERR_ARG, "temperature %g is outside [0, 100]",
                          (double)p->temperature);
    if (p->top_k < 0) return baton_fail(err, BATON_ERR_ARG, "top_k %d is negative", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return baton_fail(err, BATON_ERR_ARG, "top_p %g is outside (0, 1]", (double)p->top_p);
    if (!(fabsf(p->presence_penalty) <= 100.0f))
        return baton_fail(err, BATON_ERR_ARG, "presence_penalty %g is outside [-100, 100]",
                          (double)p->presence_penalty);
    if (!(fabsf(p->frequency_penalty) <= 100.0f))
        return baton_fail(err, BATON_ERR_ARG, "frequency_penalty %g is outside [-100, 100]",
                          (double)p->frequency_penalty);
    if (!(p->uniform >= 0.0f && p->uniform < 1.0f))
        return baton_fail(err, BATON_ERR_ARG, "uniform draw %g is outside [0, 1)",
                          (double)p->uniform);
    return BATON_OK;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void baton_rng_seed(baton_rng *rng, uint64_t seed) {
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

float baton_rng_uniform(baton_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return (float)(result >> 40) * 0x1.0p-24f;
}

size_t baton_sample_scratch_bytes(int32_t n_vocab) {
    return (size_t)n_vocab * (sizeof(float) + sizeof(int32_t) + 1);
}

typedef struct {
    float *p;
    int32_t *order;
    unsigned char *kept;
} scratch_view;

static scratch_view scratch_split(void *scratch, int32_t n_vocab) {
    scratch_view v;
    v.p = scratch;
    v.order = (int32_t *)(v.p + n_vocab);
    v.kept = (unsigned char *)(v.order + n_vocab);
    return v;
}

static int by_probability(const void *a, const void *b, void *arg) {
    const float *p = arg;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (p[i] != p[j]) return p[i] > p[j] ? -1 : 1;
    return (i > j) - (i < j);
}

/* NaN logits count as -inf so that a broken model cannot pick them. */
static float penalized(const float *logits, const uint32_t *counts, const baton_sampling *params,
                       int32_t i) {
    float l = logits[i];
    if (isnan(l)) return -INFINITY;
    if (counts != NULL && counts[i] > 0)
        l -= params->presence_penalty + params->frequency_penalty * (float)counts[i];
    return l;
}

int32_t baton_sample(const float *logits, int32_t n_vocab, const baton_sampling *params,
                     const uint32_t *counts, void *scratch) {
    scratch_view s = scratch_split(scratch, n_vocab);
    int32_t best = 0;
    float best_l = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++) {
        s.p[i] = penalized(logits, counts, params, i);
        if (s.p[i] > best_l) {
            best_l = s.p[i];
            best = i;
        }
    }
    if (params->temperature == 0.0f || best_l == -INFINITY) return best;

    // p_i = exp((l_i - max l) / T)
    for (int32_t i = 0; i < n_vocab; i++) s.p[i] = expf((s.p[i] - best_l) / params->temperature);

    int32_t n_kept = n_vocab;
    bool filter = params->top_k > 0 || params->top_p < 1.0f;
    if (filter) {
        for (int32_t i = 0; i < n_vocab; i++) s.order[i] = i;
        qsort_r(s.order, (size_t)n_vocab, sizeof *s.order, by_probability, s.p);
        if (params->top_k > 0 && params->top_k < n_kept) n_kept = params->top_k;
        if (params->top_p < 1.0f) {
            float mass = 0.0f;
            for (int32_t r = 0; r < n_kept; r++) mass += s.p[s.order[r]];
            float want = params->top_p * mass, sum = 0.0f;
            for (int32_t r = 0; r < n_kept; r++) {
                sum += s.p[s.order[r]];
                if (sum >= want) {
                    n_kept = r + 1;
                    break;
                }
            }
        }
        for (int32_t i = 0; i < n_vocab; i++) s.kept[i] = 0;
        for (int32_t r = 0; r < n_kept; r++) s.kept[s.order[r]] = 1;
    }

    float total = 0.0f;
    for (int32_t i = 0; i < n_vocab; i++)
        if (!filter || s.kept[i]) total += s.p[i];
    float target = params->uniform * total, sum = 0.0f;
    int32_t last = best;
    for (int32_t i = 0; i < n_vocab; i++) {
        if (filter && !s.kept[i]) continue;
        sum += s.p[i];
        last = i;
        if (sum > target) return i;
    }
    return last;
}
