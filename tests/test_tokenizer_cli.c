/* baton tokenize / detokenize from the command line: ids and text come out exactly, with the
 * exit codes the commands promise (0 done, 1 failed, 2 usage error). */
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static const char *baton_bin;

/* Runs baton with args (NULL-terminated), feeding in[0..in_n) on stdin; returns the exit code and
 * stdout in *out (malloc'ed, NUL-terminated, *out_n bytes). */
static int run(const char *const *args, const char *in, size_t in_n, char **out, size_t *out_n) {
    int to_child[2], from_child[2];
    REQUIRE(pipe(to_child) == 0 && pipe(from_child) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(to_child[0], 0);
        dup2(from_child[1], 1);
        close(to_child[0]);
        close(to_child[1]);
        close(from_child[0]);
        close(from_child[1]);
        const char *argv[32] = {baton_bin};
        for (int i = 0; args[i] != NULL && i < 30; i++) argv[i + 1] = args[i];
        execv(baton_bin, (char *const *)argv);
        _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    if (in_n > 0) REQUIRE(write(to_child[1], in, in_n) == (ssize_t)in_n);
    close(to_child[1]);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    REQUIRE(buf != NULL);
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            REQUIRE(buf != NULL);
        }
        ssize_t got = read(from_child[0], buf + n, cap - n - 1);
        if (got <= 0) break;
        n += (size_t)got;
    }
    close(from_child[0]);
    buf[n] = '\0';
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    *out = buf;
    *out_n = n;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* Checks that baton args exits with code want_rc and, when want_out is not NULL, prints exactly
 * want_out[0..want_n). */
static void expect(const char *const *args, const char *in, int want_rc, const char *want_out,
                   size_t want_n, int line) {
    char *out;
    size_t out_n;
    int rc = run(args, in, in ? strlen(in) : 0, &out, &out_n);
    CHECK_MSG(rc == want_rc, "line %d: %s %s: exit code %d, want %d", line, args[0],
              args[1] ? args[1] : "", rc, want_rc);
    if (want_out != NULL) {
        CHECK_MSG(out_n == want_n && memcmp(out, want_out, want_n) == 0,
                  "line %d: %s printed \"%s\", want \"%.*s\"", line, args[0], out, (int)want_n,
                  want_out);
    }
    free(out);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define EXPECT(args, in, rc, out) expect(args, in, rc, out, (out) ? strlen(out) : 0, __LINE__)

int main(void) {
    baton_bin = getenv("BATON_BIN");
    if (baton_bin == NULL || access(baton_bin, X_OK) != 0) test_skip("BATON_BIN is not built");

    /* The byte vocabulary needs no files. */
    EXPECT(ARGS("tokenize", "--tokenizer", "bytes", "\"in"), NULL, 0, "34 105 110\n");
    EXPECT(ARGS("tokenize", "--tokenizer", "bytes", ""), NULL, 0, "\n");
    EXPECT(ARGS("tokenize", "--tokenizer", "bytes", "--stdin"), "a\n", 0, "97 10\n");
    EXPECT(ARGS("tokenize", "--tokenizer", "bytes", "--", "-x"), NULL, 0, "45 120\n");
    EXPECT(ARGS("detokenize", "--tokenizer", "bytes", "104", "105", "10"), NULL, 0, "hi\n");
    EXPECT(ARGS("detokenize", "--tokenizer", "bytes"), NULL, 0, "");
    expect(ARGS("detokenize", "--tokenizer", "bytes", "255", "0"), NULL, 0, "\xff\0", 2, __LINE__);

    /* Usage errors: exit code 2. */
    EXPECT(ARGS("tokenize", "--tokenizer", "bytes", "--bogus", "x"), NULL, 2, "");
    EXPECT(ARGS("tokenize", "--tokenizer", "bytes"), NULL, 2, "");
    EXPECT(ARGS("tokenize", "--tokenizer", "bytes", "--stdin", "x"), NULL, 2, "");
    EXPECT(ARGS("tokenize", "x"), NULL, 2, "");
    EXPECT(ARGS("tokenize", "--tokenizer"), NULL, 2, "");
    EXPECT(ARGS("tokenize", "--tokenizer", "bytes", "a", "b"), NULL, 2, "");
    EXPECT(ARGS("detokenize", "--tokenizer", "bytes", "--bogus"), NULL, 2, "");
    EXPECT(ARGS("detokenize", "--tokenizer", "bytes", "12x"), NULL, 2, "");
    EXPECT(ARGS("detokenize", "--tokenizer", "bytes", "256"), NULL, 2, "");
    EXPECT(ARGS("detokenize", "--tokenizer", "bytes", "-1"), NULL, 2, "");
    EXPECT(ARGS("detokenize", "--tokenizer", "bytes", "1.5"), NULL, 2, "");
    EXPECT(ARGS("detokenize", "104"), NULL, 2, "");

    /* Help goes to stdout with exit code 0; a tokenizer that will not open is exit code 1. */
    char *out;
    size_t out_n;
    CHECK(run(ARGS("tokenize", "--help"), NULL, 0, &out, &out_n) == 0);
    CHECK(strstr(out, "usage: baton tokenize") != NULL);
    free(out);
    CHECK(run(ARGS("detokenize", "--help"), NULL, 0, &out, &out_n) == 0);
    CHECK(strstr(out, "usage: baton detokenize") != NULL);
    free(out);
    EXPECT(ARGS("tokenize", "--tokenizer", "/nonexistent/tokenizer.json", "x"), NULL, 1, "");

    const char *fixtures = test_fixtures();
    char neox[4400], world[4400];
    snprintf(neox, sizeof neox, "%s/tokenizer/20B_tokenizer.json", fixtures);
    snprintf(world, sizeof world, "%s/tokenizer/rwkv_vocab_v20230424.txt", fixtures);

    EXPECT(ARGS("tokenize", "--tokenizer", neox, "Hello world"), NULL, 0, "12092 1533\n");
    EXPECT(ARGS("tokenize", "--tokenizer", neox, "--stdin"), "  two leading spaces", 0,
           "50276 9389 4283 8470\n");
    EXPECT(ARGS("tokenize", "--tokenizer", neox, "text before<|endoftext|>text after"), NULL, 0,
           "1156 1078 0 1156 846\n");
    EXPECT(ARGS("detokenize", "--tokenizer", neox, "34263", "50273", "31748", "50275", "40084"),
           NULL, 0, "multiple     spaces   inside");
    EXPECT(ARGS("detokenize", "--tokenizer", neox, "50277"), NULL, 2, "");

    EXPECT(ARGS("tokenize", "--tokenizer", world, "--stdin"), "tabs\tand\nnewlines\n\n\nthree", 0,
           "27106 10 7005 11 49436 116 3328 35766\n");
    EXPECT(ARGS("tokenize", "--tokenizer", world, "emoji 😀🚀 and flags 🇫🇷"), NULL, 0,
           "34295 33 3319 153 129 3319 155 129 21265 38504 33 3319 136 172 3319 136 184\n");
    /* Ids that split a character still print its bytes exactly. */
    EXPECT(ARGS("detokenize", "--tokenizer", world, "3319", "153"), NULL, 0, "\xF0\x9F\x98");
    EXPECT(ARGS("detokenize", "--tokenizer", world, "34295", "33", "3319", "153", "129"), NULL, 0,
           "emoji 😀");
    EXPECT(ARGS("detokenize", "--tokenizer", world, "65536"), NULL, 2, "");
    return test_result();
}
