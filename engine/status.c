#include "status.h"

#include <stdio.h>
#include <string.h>

const char *baton_status_str(baton_status status) {
    switch (status) {
    case BATON_OK: return "ok";
    case BATON_ERR_IO: return "I/O error";
    case BATON_ERR_FORMAT: return "format error";
    case BATON_ERR_UNSUPPORTED: return "unsupported";
    case BATON_ERR_SHAPE: return "shape error";
    case BATON_ERR_NOMEM: return "out of memory";
    case BATON_ERR_ARG: return "invalid argument";
    case BATON_ERR_DEVICE: return "device error";
    case BATON_ERR_UNAVAILABLE: return "unavailable";
    case BATON_ERR_RANGE: return "out of range";
    }
    return "unknown status";
}

baton_status baton_fail(baton_error *err, baton_status status, const char *fmt, ...) {
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}

void baton_error_prefix(baton_error *err, const char *fmt, ...) {
    if (err == NULL) return;
    char prefix[BATON_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* Room for both, then cut to the message size: a long prefix truncates the tail. */
    char joined[2 * BATON_ERROR_MSG_MAX + 2];
    snprintf(joined, sizeof joined, "%s: %s", prefix, err->msg);
    snprintf(err->msg, sizeof err->msg, "%.*s", BATON_ERROR_MSG_MAX - 1, joined);
}
