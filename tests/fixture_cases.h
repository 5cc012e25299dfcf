/* The fixtures' reference cases (manifest.json) and comparisons with the bounds of the fixtures'
 * README: logits by max absolute difference; state rows att_xx and ffn_xx absolute, att_aa,
 * att_bb and att_pp relative, |d| / (1 + |ref|), att_pp only where the reference is above -1e29. */
#ifndef BATON_TEST_FIXTURE_CASES_H
#define BATON_TEST_FIXTURE_CASES_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

enum { CASES_MAX = 64, CASE_TOKENS_MAX = 4096 };

typedef struct {
    char name[64];
    char model[4608];  /* path of the model file */
    char logits[4608]; /* path of [n_tokens][n_vocab] float32 */
    char state[4608];  /* path of [n_layer][5][n_embd] float32 */
    char dtype[16];   /* dtype of the file's big matrices: fp32, fp16 or bf16 */
    int32_t tokens[CASE_TOKENS_MAX];
    int n_tokens, n_layer, n_embd, n_vocab;
} fixture_case;

/* Reads every case of manifest.json under dir; REQUIREs a well-formed manifest. */
static inline int fixture_cases_load(const char *dir, fixture_case *cases) {
    char path[4200];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    size_t size = 0;
    char *text = test_read_file(path, &size);
    REQUIRE(text != NULL);
    cJSON *root = cJSON_ParseWithLength(text, size);
    REQUIRE(root != NULL);
    int n = 0;
    const cJSON *model, *c;
    cJSON_ArrayForEach(model, cJSON_GetObjectItem(root, "models")) {
        const char *mdir = cJSON_GetStringValue(cJSON_GetObjectItem(model, "dir"));
        REQUIRE(mdir != NULL);
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(model, "cases")) {
            REQUIRE(n < CASES_MAX);
            fixture_case *fc = &cases[n++];
            memset(fc, 0, sizeof *fc);
            snprintf(fc->name, sizeof fc->name, "%s", cJSON_GetStringValue(cJSON_GetObjectItem(c, "name")));
            const char *file = cJSON_GetStringValue(cJSON_GetObjectItem(c, "model"));
            snprintf(fc->model, sizeof fc->model, "%s/%s/%s", dir, mdir, file);
            snprintf(fc->logits, sizeof fc->logits, "%s/%s/%s", dir, mdir,
                     cJSON_GetStringValue(cJSON_GetObjectItem(c, "logits")));
            snprintf(fc->state, sizeof fc->state, "%s/%s/%s", dir, mdir,
                     cJSON_GetStringValue(cJSON_GetObjectItem(c, "state")));
            fc->n_layer = cJSON_GetObjectItem(c, "n_layer")->valueint;
            fc->n_embd = cJSON_GetObjectItem(c, "n_embd")->valueint;
            fc->n_vocab = cJSON_GetObjectItem(c, "n_vocab")->valueint;
            const cJSON *files = cJSON_GetObjectItem(model, "files"), *f;
            cJSON_ArrayForEach(f, files) {
                if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(f, "file")), file) == 0)
                    snprintf(fc->dtype, sizeof fc->dtype, "%.4s",
                             cJSON_GetStringValue(cJSON_GetObjectItem(f, "dtype")));
            }
            const cJSON *t;
            cJSON_ArrayForEach(t, cJSON_GetObjectItem(c, "tokens")) {
                REQUIRE(fc->n_tokens < CASE_TOKENS_MAX);
                fc->tokens[fc->n_tokens++] = t->valueint;
            }
        }
    }
    cJSON_Delete(root);
    free(text);
    return n;
}

/* Reads a float32 file that must hold exactly n floats. */
static inline float *fixture_floats(const char *path, size_t n) {
    size_t size = 0;
    float *data = test_read_file(path, &size);
    REQUIRE(data != NULL);
    REQUIRE(size == n * sizeof(float));
    return data;
}

static inline double max_abs_diff(const float *a, const float *b, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= worst)) worst = d; /* NaN counts as worst */
    }
    return worst;
}

/* The state's worst difference under the README's rules. */
static inline double state_diff(const float *got, const float *ref, int n_layer, int n_embd) {
    double worst = 0.0;
    for (int l = 0; l < n_layer; l++) {
        for (int r = 0; r < 5; r++) {
            for (int i = 0; i < n_embd; i++) {
                size_t at = ((size_t)l * 5 + (size_t)r) * (size_t)n_embd + (size_t)i;
                double g = got[at], e = ref[at], d;
                if (r == 0 || r == 4) {
                    d = fabs(g - e);
                } else {
                    if (r == 3 && e <= -1e29) continue;
                    d = fabs(g - e) / (1.0 + fabs(e));
                }
                if (!(d <= worst)) worst = d;
            }
        }
    }
    return worst;
}

/* The README's bound for a path that keeps weights in fp16 and computes in fp32. */
static inline double gpu_bound(const fixture_case *fc) {
    return strcmp(fc->dtype, "fp32") == 0 ? 1e-2 : 2e-3;
}

#define CPU_BOUND 1e-4

#endif
