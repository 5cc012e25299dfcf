/* baton synth and baton inspect from the command line: a synth'd file inspects to its shape;
 * --help exits 0; unknown flags, bad values and missing options exit 2; a bad file exits 1. */
#include "check.h"
#include "cli.h"

static char *run_output(const char *args, int *rc) {
    char out[512], cmd[2048];
    cli_tmp(out, sizeof out, "inspect.txt");
    snprintf(cmd, sizeof cmd, "%s > '%s'", args, out);
    *rc = cli_run("%s", cmd);
    size_t n = 0;
    char *text = test_read_file(out, &n);
    REQUIRE(text != NULL);
    text = realloc(text, n + 1);
    text[n] = '\0';
    unlink(out);
    return text;
}

int main(void) {
    char pth[512], st[512], junk[512], args[2048];
    cli_tmp(pth, sizeof pth, "cli.pth");
    cli_tmp(st, sizeof st, "cli.safetensors");
    cli_tmp(junk, sizeof junk, "junk.pth");

    int rc = cli_run("synth --layers 3 --embd 24 --vocab 50 --ffn 40 --dtype fp16 --seed 9 -o '%s'", pth);
    CHECK_MSG(rc == 0, "synth exited %d", rc);
    rc = cli_run("synth --layers 2 --embd 16 --vocab 30 --dtype fp32 --hf-names -o '%s'", st);
    CHECK_MSG(rc == 0, "synth exited %d", rc);

    snprintf(args, sizeof args, "inspect --model '%s'", pth);
    char *text = run_output(args, &rc);
    CHECK_MSG(rc == 0, "inspect exited %d", rc);
    CHECK_MSG(strstr(text, "pth") && strstr(text, "n_layer                  3\n") &&
                  strstr(text, "n_embd                   24\n") &&
                  strstr(text, "n_vocab                  50\n") && strstr(text, "n_ffn                    40\n") &&
                  strstr(text, "tensors                  60 (fp16 60)"),
              "%s", text);
    free(text);
    snprintf(args, sizeof args, "inspect --model '%s'", st);
    text = run_output(args, &rc);
    CHECK_MSG(rc == 0 && strstr(text, "safetensors") && strstr(text, "n_ffn                    64\n") &&
                  strstr(text, "vectors as fp32          ") && strstr(text, "matrix dtype             fp32"),
              "%s", text);
    free(text);
    text = run_output("synth --help", &rc);
    CHECK(rc == 0 && strstr(text, "--zero-matrices"));
    free(text);
    text = run_output("inspect --help", &rc);
    CHECK(rc == 0 && strstr(text, "--model"));
    free(text);

    /* Usage errors exit 2. */
    CHECK(cli_run("inspect --bogus 2>/dev/null") == 2);
    CHECK(cli_run("inspect 2>/dev/null") == 2);
    CHECK(cli_run("inspect --model a b 2>/dev/null") == 2);
    CHECK(cli_run("synth --layers 2 --embd 8 --vocab 9 2>/dev/null") == 2);
    CHECK(cli_run("synth --layers x --embd 8 --vocab 9 -o '%s' 2>/dev/null", junk) == 2);
    CHECK(cli_run("synth --layers 0 --embd 8 --vocab 9 -o '%s' 2>/dev/null", junk) == 2);
    CHECK(cli_run("synth --layers 1 --embd 8 --vocab 9 --dtype int8 -o '%s' 2>/dev/null", junk) == 2);
    CHECK(cli_run("synth --layers 1 --embd 8 --vocab 9 -o '%s.bin' 2>/dev/null", junk) == 2);
    CHECK(cli_run("synth --layers 1 --embd 8 --vocab 9 --frobnicate -o '%s' 2>/dev/null", junk) == 2);
    /* Failures of the world exit 1. */
    CHECK(cli_run("synth --layers 1 --embd 8 --vocab 9 -o /nonexistent-dir/x.pth 2>/dev/null") == 1);
    FILE *f = fopen(junk, "wb");
    REQUIRE(f != NULL);
    fputs("PK\x03\x04 not really a zip", f);
    fclose(f);
    CHECK(cli_run("inspect --model '%s' 2>/dev/null", junk) == 1);
    unlink(junk);
    unlink(pth);
    unlink(st);
    return test_result();
}
