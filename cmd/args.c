#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>

bool args_int(const char *cmd, const char *flag, const char *text, long long min, long long max,
              long long *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (text[0] == '\0' || *end != '\0' || errno != 0) {
        fprintf(stderr, "baton %s: %s: '%s' is not an integer\n", cmd, flag, text);
        return false;
    }
    if (v < min || v > max) {
        fprintf(stderr, "baton %s: %s: %lld is outside [%lld, %lld]\n", cmd, flag, v, min, max);
        return false;
    }
    *out = v;
    return true;
}

bool args_float(const char *cmd, const char *flag, const char *text, double min, double max,
                double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (text[0] == '\0' || *end != '\0' || errno != 0 || !isfinite(v)) {
        fprintf(stderr, "baton %s: %s: '%s' is not a number\n", cmd, flag, text);
        return false;
    }
    if (v < min || v > max) {
        fprintf(stderr, "baton %s: %s: %g is outside [%g, %g]\n", cmd, flag, v, min, max);
        return false;
    }
    *out = v;
    return true;
}

bool args_int_list(const char *cmd, const char *flag, const char *text, long long min,
                   long long max, int32_t **out, int *n) {
    int count = 1;
    for (const char *p = text; *p; p++) count += *p == ',';
    int32_t *values = malloc((size_t)count * sizeof *values);
    if (values == NULL) return false;
    const char *p = text;
    for (int i = 0; i < count; i++) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || (*end != ',' && *end != '\0') || errno != 0) {
            fprintf(stderr, "baton %s: %s: '%s' is not a comma-separated list of integers\n", cmd,
                    flag, text);
            free(values);
            return false;
        }
        if (v < min || v > max) {
            fprintf(stderr, "baton %s: %s: %lld is outside [%lld, %lld]\n", cmd, flag, v, min, max);
            free(values);
            return false;
        }
        values[i] = (int32_t)v;
        p = end + 1;
    }
    *out = values;
    *n = count;
    return true;
}

int args_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "baton %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see 'baton %s --help')\n", cmd);
    va_end(ap);
    return BATON_EXIT_USAGE;
}
