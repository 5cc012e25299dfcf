/* `baton eval` against the fixtures on the device named by $BATON_TEST_DEVICE (cpu by default):
 * every case of every model file token by token, with --prefill and with --state-out; --batch
 * with streams of different lengths equals each stream's solo run bitwise; bad usage exits 2. */
#include <string.h>

#include "cli.h"
#include "fixture_cases.h"

static const char *device;
static double bound(const fixture_case *fc) {
    return strcmp(device, "cpu") == 0 ? CPU_BOUND : gpu_bound(fc);
}

static void token_list(const int32_t *tokens, int n, char *out, size_t size) {
    size_t at = 0;
    out[0] = '\0';
    for (int i = 0; i < n && at + 16 < size; i++)
        at += (size_t)snprintf(out + at, size - at, i ? ",%d" : "%d", tokens[i]);
}

static void check_case(const fixture_case *fc) {
    char logits_path[512], state_path[512], ids[CASE_TOKENS_MAX * 8];
    cli_tmp(logits_path, sizeof logits_path, "logits.f32");
    cli_tmp(state_path, sizeof state_path, "state.f32");
    token_list(fc->tokens, fc->n_tokens, ids, sizeof ids);
    int V = fc->n_vocab, T = fc->n_tokens;
    float *ref = fixture_floats(fc->logits, (size_t)T * V);
    size_t state_n = (size_t)fc->n_layer * 5 * fc->n_embd;
    float *ref_state = fixture_floats(fc->state, state_n);

    for (int prefill = 0; prefill < 2; prefill++) {
        int rc = cli_run("eval --model '%s' --device %s --tokens %s --logits-out '%s' --state-out '%s'%s",
                         fc->model, device, ids, logits_path, state_path, prefill ? " --prefill" : "");
        CHECK_MSG(rc == 0, "%s: eval exited %d", fc->name, rc);
        if (rc != 0) continue;
        size_t rows = prefill ? 1 : (size_t)T;
        float *got = fixture_floats(logits_path, rows * V);
        double d = max_abs_diff(got, ref + (T - rows) * V, rows * V);
        CHECK_MSG(d <= bound(fc), "%s%s on %s: logits differ by %g (bound %g)", fc->name,
                  prefill ? " --prefill" : "", device, d, bound(fc));
        float *state = fixture_floats(state_path, state_n);
        d = state_diff(state, ref_state, fc->n_layer, fc->n_embd);
        CHECK_MSG(d <= bound(fc), "%s%s on %s: state differs by %g (bound %g)", fc->name,
                  prefill ? " --prefill" : "", device, d, bound(fc));
        printf("%s%s on %s: ok\n", fc->name, prefill ? " --prefill" : "", device);
        free(got);
        free(state);
    }
    free(ref);
    free(ref_state);
}

/* Three streams of different lengths sharing steps: each stream's logits equal its solo run. */
static void check_batch(const fixture_case *fc) {
    char batch_path[512], logits_path[512], solo_path[512], ids[3][CASE_TOKENS_MAX * 8];
    cli_tmp(batch_path, sizeof batch_path, "batch.txt");
    cli_tmp(logits_path, sizeof logits_path, "batch-logits.f32");
    cli_tmp(solo_path, sizeof solo_path, "solo-logits.f32");
    int lens[3] = {fc->n_tokens, fc->n_tokens / 3 + 1, 2};
    FILE *f = fopen(batch_path, "w");
    REQUIRE(f != NULL);
    for (int i = 0; i < 3; i++) {
        int n = lens[i] < fc->n_tokens - i ? lens[i] : fc->n_tokens - i;
        token_list(fc->tokens + i, n, ids[i], sizeof ids[i]);
        fprintf(f, "%s\n", ids[i]);
    }
    fclose(f);
    int rc = cli_run("eval --model '%s' --device %s --batch '%s' --logits-out '%s'", fc->model,
                     device, batch_path, logits_path);
    REQUIRE(rc == 0);
    size_t size = 0;
    float *all = test_read_file(logits_path, &size);
    REQUIRE(all != NULL);
    size_t at = 0;
    for (int i = 0; i < 3; i++) {
        REQUIRE(cli_run("eval --model '%s' --device %s --tokens %s --logits-out '%s'", fc->model,
                        device, ids[i], solo_path) == 0);
        size_t n = 0;
        float *solo = test_read_file(solo_path, &n);
        REQUIRE(solo != NULL && at + n <= size);
        CHECK_MSG(memcmp(solo, (char *)all + at, n) == 0,
                  "%s on %s: stream %d in a batch differs from its solo run", fc->name, device, i);
        at += n;
        free(solo);
    }
    CHECK(at == size);
    free(all);
    printf("%s --batch on %s: ok\n", fc->name, device);
}

static void check_usage(const fixture_case *fc) {
    char out[512];
    cli_tmp(out, sizeof out, "unused.f32");
    CHECK(cli_run("eval --model '%s' --tokens 1,2 --logits-out '%s' --bogus 2>/dev/null", fc->model, out) == 2);
    CHECK(cli_run("eval --model '%s' --tokens 1,x --logits-out '%s' 2>/dev/null", fc->model, out) == 2);
    CHECK(cli_run("eval --model '%s' --logits-out '%s' 2>/dev/null", fc->model, out) == 2);
    CHECK(cli_run("eval --model '%s' --tokens 1 --logits-out '%s' --device gpu 2>/dev/null", fc->model, out) == 2);
    CHECK(cli_run("eval --model '%s' --tokens 99999 --logits-out '%s' 2>/dev/null", fc->model, out) == 2);
    CHECK(cli_run("eval --model /nonexistent.pth --tokens 1 --logits-out '%s' 2>/dev/null", out) == 1);
    CHECK(cli_run("eval --help >/dev/null") == 0);
    CHECK(cli_run("frobnicate 2>/dev/null") == 2);
}

int main(void) {
    const char *dir = test_fixtures();
    device = getenv("BATON_TEST_DEVICE");
    if (device == NULL || device[0] == '\0') device = "cpu";
    if (strncmp(device, "vulkan", 6) == 0 && cli_run("devices > /dev/null 2>&1") != 0)
        test_skip("no Vulkan device (baton devices lists none)");
    static fixture_case cases[CASES_MAX];
    int n = fixture_cases_load(dir, cases);
    for (int i = 0; i < n; i++) check_case(&cases[i]);
    check_batch(&cases[n - 1]);
    check_usage(&cases[0]);
    return test_result();
}
