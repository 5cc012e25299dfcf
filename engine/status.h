/* Status codes and error messages: the tier for what the world can do wrong.
 *
 * Everything that can fail because of a file, a request, a device or the network returns a
 * baton_status and, where the caller passed one, fills a baton_error with a one-line message that
 * names the thing and what is wrong with it. Programmer errors are asserts, never statuses. */
#ifndef BATON_STATUS_H
#define BATON_STATUS_H

#include <stdarg.h>

typedef enum {
    BATON_OK = 0,
    BATON_ERR_IO,          /* open/read/write/map failed */
    BATON_ERR_FORMAT,      /* malformed, truncated or hostile file contents */
    BATON_ERR_UNSUPPORTED, /* well-formed but outside what Baton reads */
    BATON_ERR_SHAPE,       /* a tensor is missing or has the wrong shape or dtype */
    BATON_ERR_NOMEM,       /* an allocation failed or a limit would be exceeded */
    BATON_ERR_ARG,         /* bad argument or request value */
    BATON_ERR_DEVICE,      /* a compute device failed or lacks what is needed */
    BATON_ERR_UNAVAILABLE, /* a peer or device is gone or did not answer in time */
    BATON_ERR_RANGE,       /* a value cannot be represented (e.g. fp16 overflow) */
} baton_status;

enum { BATON_ERROR_MSG_MAX = 512 };

typedef struct {
    baton_status status;
    char msg[BATON_ERROR_MSG_MAX];
} baton_error;

/* Short name of a status, e.g. "format error". Never NULL. */
const char *baton_status_str(baton_status status);

/* Records status and a printf-style message in err (which may be NULL) and returns status,
 * so that `return baton_fail(err, BATON_ERR_FORMAT, "%s: ...", path);` reads as one step. */
baton_status baton_fail(baton_error *err, baton_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to the message already in err (no-op when err is NULL). */
void baton_error_prefix(baton_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
