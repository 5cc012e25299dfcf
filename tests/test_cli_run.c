/* `baton run`: greedy output equals the argmax chain computed here with the CPU backend; a seed
 * makes sampling repeatable; a stop string and max tokens end the text; bad usage exits 2. */
#include <string.h>

#include "backend.h"
#include "cli.h"

static char *run_capture(const char *args) {
    char out_path[512], *text;
    cli_tmp(out_path, sizeof out_path, "run.txt");
    int rc = cli_run("run %s > '%s'", args, out_path);
    CHECK_MSG(rc == 0, "baton run %s exited %d", args, rc);
    size_t n = 0;
    text = test_read_file(out_path, &n);
    REQUIRE(text != NULL);
    text = realloc(text, n + 1);
    text[n] = '\0';
    return text;
}

/* The greedy continuation of prompt for n tokens, byte vocabulary, with the CPU backend. */
static void greedy_reference(const char *model_path, const char *prompt, int n, char *out) {
    baton_model *m = NULL;
    baton_error err = {0};
    REQUIRE(baton_model_load(model_path, NULL, &m, &err) == BATON_OK);
    int T = (int)strlen(prompt);
    baton_stage_config cfg = {.layer_end = m->n_layer, .with_embedding = true, .with_head = true,
                              .n_slots = 1, .max_seqs = 1, .max_tokens = T};
    baton_backend *b = NULL;
    REQUIRE(baton_cpu_backend_new(m, &cfg, &b, &err) == BATON_OK);
    int32_t toks[256];
    for (int i = 0; i < T; i++) toks[i] = (unsigned char)prompt[i];
    baton_sampling greedy = {.temperature = 0.0f, .top_p = 1.0f};
    baton_seq seq = {0, T};
    int32_t next = 0;
    baton_step s = {.n_seqs = 1, .seqs = &seq, .tokens = toks, .sampling = &greedy, .tokens_out = &next};
    REQUIRE(baton_backend_step(b, &s, &err) == BATON_OK);
    for (int i = 0; i < n; i++) {
        out[i] = (char)next;
        seq.n_tokens = 1;
        s.tokens = &next;
        REQUIRE(baton_backend_step(b, &s, &err) == BATON_OK);
    }
    out[n] = '\0';
    baton_backend_free(b);
    baton_model_free(m);
}

int main(void) {
    const char *dir = test_fixtures();
    char model[4200], args[8192];
    snprintf(model, sizeof model, "%s/tiny-rwkv4-660K/model.fp32.pth", dir);

    char expect[64];
    greedy_reference(model, "In the beginning", 40, expect);
    snprintf(args, sizeof args, "--model '%s' --tokenizer bytes --prompt 'In the beginning' --temperature 0 --max-tokens 40", model);
    char *got = run_capture(args);
    CHECK_MSG(strlen(got) == 41 && memcmp(got, expect, 40) == 0 && got[40] == '\n',
              "greedy run gave '%s', expected '%s'", got, expect);
    free(got);

    /* A stop string cuts the text before it; it is never printed. */
    char stop[4] = {expect[10], expect[11], expect[12], '\0'};
    if (strchr(stop, '\'') == NULL && strstr(expect, stop) == expect + 10) {
        snprintf(args, sizeof args, "--model '%s' --tokenizer bytes --prompt 'In the beginning' --temperature 0 --max-tokens 40 --stop '%s'", model, stop);
        got = run_capture(args);
        CHECK_MSG(strlen(got) == 11 && memcmp(got, expect, 10) == 0, "with --stop '%s': '%s'", stop, got);
        free(got);
    }

    /* The same seed gives the same sample; the text is as long as asked. */
    snprintf(args, sizeof args, "--model '%s' --tokenizer bytes --prompt 'Once' --temperature 1 --top-p 0.9 --seed 7 --max-tokens 30", model);
    char *a = run_capture(args), *b = run_capture(args);
    CHECK(strcmp(a, b) == 0);
    free(a);
    free(b);

    CHECK(cli_run("run --model '%s' --tokenizer bytes --prompt x --top-p 0 2>/dev/null", model) == 2);
    CHECK(cli_run("run --model '%s' --tokenizer bytes --prompt x --temperature -1 2>/dev/null", model) == 2);
    CHECK(cli_run("run --model '%s' --tokenizer bytes --prompt '' 2>/dev/null", model) == 2);
    CHECK(cli_run("run --model '%s' --tokenizer bytes --prompt x --max-tokens ten 2>/dev/null", model) == 2);
    CHECK(cli_run("run --model '%s' --tokenizer bytes --prompt x --nonsense 2>/dev/null", model) == 2);
    CHECK(cli_run("run --model '%s' --tokenizer /nonexistent --prompt x 2>/dev/null", model) == 1);
    CHECK(cli_run("run --help > /dev/null") == 0);
    return test_result();
}
