/* The few helpers every test uses: checks that report where they failed, the fixtures folder,
 * and skipping (exit code 77, which ctest reports as skipped). */
#ifndef BATON_TEST_CHECK_H
#define BATON_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int check_failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

/* Stops the test now (a check whose failure makes the rest meaningless). */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: required: %s\n", __FILE__, __LINE__, #cond);                   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define TEST_SKIP_CODE 77

static inline void test_skip(const char *why) {
    printf("SKIP: %s\n", why);
    exit(TEST_SKIP_CODE);
}

/* The exit code of a test: 0 when every check passed. */
static inline int test_result(void) {
    if (check_failures) fprintf(stderr, "%d check(s) failed\n", check_failures);
    return check_failures ? 1 : 0;
}

/* The fixtures folder ($BATON_FIXTURES, else ../shared/fixtures from the source tree), or skips
 * the test saying why. */
static inline const char *test_fixtures(void) {
    static char path[4096];
    const char *env = getenv("BATON_FIXTURES");
    if (env != NULL && env[0] != '\0') {
        snprintf(path, sizeof path, "%s", env);
    } else {
        snprintf(path, sizeof path, "%s/../shared/fixtures", BATON_SOURCE_DIR);
    }
    struct stat st;
    char manifest[4200];
    snprintf(manifest, sizeof manifest, "%s/manifest.json", path);
    if (stat(manifest, &st) != 0) {
        fprintf(stderr, "fixtures not found at %s (set BATON_FIXTURES)\n", path);
        test_skip("no fixtures: ../shared/fixtures is absent and BATON_FIXTURES is not set");
    }
    return path;
}

/* Reads a whole file; returns NULL when it cannot. *size gets its length. Caller frees. */
static inline void *test_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf != NULL && size != NULL) *size = (size_t)n;
    return buf;
}

#endif
