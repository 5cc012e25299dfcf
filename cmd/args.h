/* Parsing command-line values. Every parser checks the whole string and its range; a bad value
 * prints "baton CMD: --flag: ..." and the caller exits with code 2 (usage error). */
#ifndef BATON_ARGS_H
#define BATON_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum { BATON_EXIT_OK = 0, BATON_EXIT_FAIL = 1, BATON_EXIT_USAGE = 2 };

bool args_int(const char *cmd, const char *flag, const char *text, long long min, long long max,
              long long *out);
bool args_float(const char *cmd, const char *flag, const char *text, double min, double max,
                double *out);
/* Comma-separated integers in [min, max]: "34,105,110". *out is malloc'ed; *n gets the count. */
bool args_int_list(const char *cmd, const char *flag, const char *text, long long min,
                   long long max, int32_t **out, int *n);
/* Prints "baton CMD: message" and a pointer to --help, returns BATON_EXIT_USAGE. */
int args_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
