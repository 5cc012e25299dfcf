/* Running build/baton from a test: the path comes from $BATON_BIN (set by CMake), scratch files
 * go under $BATON_TMP. */
#ifndef BATON_TEST_CLI_H
#define BATON_TEST_CLI_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static inline const char *cli_bin(void) {
    const char *bin = getenv("BATON_BIN");
    REQUIRE(bin != NULL);
    return bin;
}

/* A scratch path unique to this process: $BATON_TMP/<pid>-<name>. */
static inline const char *cli_tmp(char *buf, size_t size, const char *name) {
    const char *dir = getenv("BATON_TMP");
    snprintf(buf, size, "%s/%d-%s", dir ? dir : "/tmp", (int)getpid(), name);
    return buf;
}

/* Runs "$BATON_BIN <args>" through the shell (args are already quoted as needed) and returns its
 * exit code, or -1 when it did not exit normally (a crash counts as a failure). */
static inline int cli_run(const char *fmt, ...) {
    char args[16384], cmd[17000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "'%s' %s", cli_bin(), args);
    int status = system(cmd);
    if (status == -1 || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

#endif
