/* Building small, deliberately broken model files in memory for the malformed-input tests: a
 * stored-entry zip writer, a pickle assembler for torch's dict of tensors, a safetensors writer,
 * and the check that a file is refused with a message that names it. */
#ifndef BATON_TEST_MALFORMED_BUILD_H
#define BATON_TEST_MALFORMED_BUILD_H

#include <stdint.h>

#include "check.h"
#include "cli.h"
#include "model.h"
#include "tensor_set.h"

/* ---- A growable byte buffer ---- */

typedef struct {
    unsigned char *bytes;
    size_t len, cap;
} mbuf;

static inline void mb_put(mbuf *b, const void *data, size_t n) {
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) cap *= 2;
        b->bytes = realloc(b->bytes, cap);
        REQUIRE(b->bytes != NULL);
        b->cap = cap;
    }
    if (n) memcpy(b->bytes + b->len, data, n);
    b->len += n;
}
static inline void mb_le(mbuf *b, uint64_t v, int n) {
    unsigned char le[8];
    for (int i = 0; i < n; i++) le[i] = (unsigned char)(v >> (8 * i));
    mb_put(b, le, (size_t)n);
}
static inline void mb_u8(mbuf *b, unsigned v) { mb_le(b, v, 1); }
static inline void mb_str(mbuf *b, const char *s) { mb_put(b, s, strlen(s)); }
static inline void mb_set_le(mbuf *b, size_t at, uint64_t v, int n) {
    REQUIRE(at + (size_t)n <= b->len);
    for (int i = 0; i < n; i++) b->bytes[at + i] = (unsigned char)(v >> (8 * i));
}

/* ---- Zip: stored entries, sizes in the local headers, no descriptors ---- */

enum { MZIP_MAX = 16 };
typedef struct {
    const char *name;
    const void *data;
    size_t size;
} mzip_entry;

typedef struct {
    size_t local[MZIP_MAX];   /* offset of each local header */
    size_t central[MZIP_MAX]; /* offset of each central header */
    size_t cd_offset, eocd;
} mzip_layout;

static inline mbuf mzip_build(const mzip_entry *e, size_t n, mzip_layout *layout) {
    REQUIRE(n <= MZIP_MAX);
    mbuf b = {0};
    mzip_layout l;
    memset(&l, 0, sizeof l);
    for (size_t i = 0; i < n; i++) {
        l.local[i] = b.len;
        mb_le(&b, 0x04034b50, 4);
        mb_le(&b, 20, 2);
        mb_le(&b, 0, 2); /* flags */
        mb_le(&b, 0, 2); /* stored */
        mb_le(&b, 0, 4); /* time, date */
        mb_le(&b, 0, 4); /* crc: not checked by the reader */
        mb_le(&b, e[i].size, 4);
        mb_le(&b, e[i].size, 4);
        mb_le(&b, strlen(e[i].name), 2);
        mb_le(&b, 0, 2);
        mb_str(&b, e[i].name);
        mb_put(&b, e[i].data, e[i].size);
    }
    l.cd_offset = b.len;
    for (size_t i = 0; i < n; i++) {
        l.central[i] = b.len;
        mb_le(&b, 0x02014b50, 4);
        mb_le(&b, 20, 2);
        mb_le(&b, 20, 2);
        mb_le(&b, 0, 2);
        mb_le(&b, 0, 2);
        mb_le(&b, 0, 4);
        mb_le(&b, 0, 4);
        mb_le(&b, e[i].size, 4);
        mb_le(&b, e[i].size, 4);
        mb_le(&b, strlen(e[i].name), 2);
        mb_le(&b, 0, 2);
        mb_le(&b, 0, 2);
        mb_le(&b, 0, 2);
        mb_le(&b, 0, 2);
        mb_le(&b, 0, 4);
        mb_le(&b, l.local[i], 4);
        mb_str(&b, e[i].name);
    }
    l.eocd = b.len;
    mb_le(&b, 0x06054b50, 4);
    mb_le(&b, 0, 4);
    mb_le(&b, n, 2);
    mb_le(&b, n, 2);
    mb_le(&b, l.eocd - l.cd_offset, 4);
    mb_le(&b, l.cd_offset, 4);
    mb_le(&b, 0, 2);
    if (layout) *layout = l;
    return b;
}

/* Central header field offsets, for corrupting. */
enum { CDH_FLAGS = 8, CDH_METHOD = 10, CDH_COMP = 20, CDH_UNCOMP = 24, CDH_NAME_LEN = 28,
       CDH_DISK = 34, CDH_LOCAL = 42, CDH_NAME = 46 };
enum { EOCD_COUNT_DISK = 8, EOCD_COUNT = 10, EOCD_CD_SIZE = 12, EOCD_CD_OFFSET = 16 };

/* ---- Pickles of torch's dict of tensors ---- */

typedef struct {
    const char *name;
    const char *storage; /* "FloatStorage", "HalfStorage", "BFloat16Storage" */
    const char *key;
    int64_t numel, offset;
    int ndim;
    int64_t shape[6], stride[6];
} mpk_tensor;

static inline void mpk_int(mbuf *b, int64_t v) {
    if (v >= 0 && v < 256) {
        mb_u8(b, 'K');
        mb_le(b, (uint64_t)v, 1);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        mb_u8(b, 'J');
        mb_le(b, (uint64_t)v, 4);
    } else {
        mb_u8(b, 0x8a);
        mb_u8(b, 8);
        mb_le(b, (uint64_t)v, 8);
    }
}
static inline void mpk_unicode(mbuf *b, const char *s) {
    mb_u8(b, 'X');
    mb_le(b, strlen(s), 4);
    mb_str(b, s);
}
static inline void mpk_global(mbuf *b, const char *module, const char *name) {
    mb_u8(b, 'c');
    mb_str(b, module);
    mb_u8(b, '\n');
    mb_str(b, name);
    mb_u8(b, '\n');
}

/* One _rebuild_tensor_v2(...) call, leaving the tensor on the stack. */
static inline void mpk_tensor_value(mbuf *b, const mpk_tensor *t) {
    mpk_global(b, "torch._utils", "_rebuild_tensor_v2");
    mb_u8(b, '(');
    mb_u8(b, '(');
    mpk_unicode(b, "storage");
    mpk_global(b, "torch", t->storage);
    mpk_unicode(b, t->key);
    mpk_unicode(b, "cpu");
    mpk_int(b, t->numel);
    mb_u8(b, 't');
    mb_u8(b, 'Q');
    mpk_int(b, t->offset);
    mb_u8(b, '(');
    for (int d = 0; d < t->ndim; d++) mpk_int(b, t->shape[d]);
    mb_u8(b, 't');
    mb_u8(b, '(');
    for (int d = 0; d < t->ndim; d++) mpk_int(b, t->stride[d]);
    mb_u8(b, 't');
    mb_u8(b, 0x89);
    mpk_global(b, "collections", "OrderedDict");
    mb_u8(b, ')');
    mb_u8(b, 'R');
    mb_u8(b, 't');
    mb_u8(b, 'R');
}

static inline mbuf mpk_dict(const mpk_tensor *t, size_t n) {
    mbuf b = {0};
    mb_u8(&b, 0x80);
    mb_u8(&b, 2);
    mb_u8(&b, '}');
    mb_u8(&b, '(');
    for (size_t i = 0; i < n; i++) {
        mpk_unicode(&b, t[i].name);
        mpk_tensor_value(&b, &t[i]);
    }
    mb_u8(&b, 'u');
    mb_u8(&b, '.');
    return b;
}

/* A contiguous tensor of a 2-D shape over its own storage "key". */
static inline mpk_tensor mpk_matrix(const char *name, const char *key, int64_t rows, int64_t cols) {
    mpk_tensor t = {.name = name, .storage = "FloatStorage", .key = key, .numel = rows * cols,
                    .ndim = 2, .shape = {rows, cols}, .stride = {cols, 1}};
    return t;
}

/* A .pth: archive/data.pkl holding pickle, plus archive/data/<key> entries of the given sizes. */
static inline mbuf mpth_build(const mbuf *pickle, const char *const *keys, const size_t *sizes, size_t n) {
    static unsigned char zeros[1 << 16];
    mzip_entry e[MZIP_MAX];
    char names[MZIP_MAX][64];
    REQUIRE(n + 1 <= MZIP_MAX);
    e[0] = (mzip_entry){"archive/data.pkl", pickle->bytes, pickle->len};
    for (size_t i = 0; i < n; i++) {
        REQUIRE(sizes[i] <= sizeof zeros);
        snprintf(names[i], sizeof names[i], "archive/data/%s", keys[i]);
        e[i + 1] = (mzip_entry){names[i], zeros, sizes[i]};
    }
    return mzip_build(e, n + 1, NULL);
}

/* ---- safetensors from a literal JSON header ---- */

static inline mbuf mst_build(const char *json, size_t data_bytes) {
    mbuf b = {0};
    size_t n = strlen(json);
    mb_le(&b, n, 8);
    mb_str(&b, json);
    for (size_t i = 0; i < data_bytes; i++) mb_u8(&b, (unsigned)(i * 7 + 1));
    return b;
}

/* ---- The checks ---- */

/* from_memory over an exact-size copy (so that AddressSanitizer sees any read past the end) must
 * refuse the bytes, with a message naming them and containing want (NULL: any message). */
static inline void expect_refused_at(const char *file, int line, const void *data, size_t size,
                              const char *name, baton_status want_status, const char *want) {
    unsigned char *copy = malloc(size ? size : 1);
    REQUIRE(copy != NULL);
    if (size) memcpy(copy, data, size);
    baton_tensor_set *set = (baton_tensor_set *)1;
    baton_error err = {0};
    baton_status st = baton_tensor_set_from_memory(copy, size, name, &set, &err);
    if (st == BATON_OK) {
        fprintf(stderr, "%s:%d: %s (%zu bytes) was accepted\n", file, line, name, size);
        check_failures++;
        baton_tensor_set_free(set);
    } else {
        if (set != NULL || strncmp(err.msg, name, strlen(name)) != 0 ||
            (want != NULL && strstr(err.msg, want) == NULL) ||
            ((int)want_status >= 0 && st != want_status)) {
            fprintf(stderr, "%s:%d: %s: status '%s', message '%s' (wanted '%s')\n", file, line,
                    name, baton_status_str(st), err.msg, want ? want : "");
            check_failures++;
        }
    }
    free(copy);
}
#define ANY_STATUS ((baton_status)-1)
#define EXPECT_REFUSED(buf, name, status, want) \
    expect_refused_at(__FILE__, __LINE__, (buf)->bytes, (buf)->len, name, status, want)

/* from_memory must not crash on the bytes; a refusal must name them. Returns the status. */
static inline baton_status try_bytes(const void *data, size_t size, const char *name) {
    unsigned char *copy = malloc(size ? size : 1);
    REQUIRE(copy != NULL);
    if (size) memcpy(copy, data, size);
    baton_tensor_set *set = NULL;
    baton_error err = {0};
    baton_status st = baton_tensor_set_from_memory(copy, size, name, &set, &err);
    if (st != BATON_OK) {
        CHECK_MSG(set == NULL && strncmp(err.msg, name, strlen(name)) == 0, "%s", err.msg);
    } else {
        for (size_t i = 0; i < set->n_tensors; i++) { /* every listed byte must be readable */
            const baton_tensor *t = &set->tensors[i];
            uint64_t bytes = t->n_elements * baton_dtype_size(t->dtype);
            CHECK(t->file_offset + bytes <= size);
            if (bytes) CHECK(((const unsigned char *)t->data)[bytes - 1] == copy[t->file_offset + bytes - 1]);
        }
    }
    baton_tensor_set_free(set);
    free(copy);
    return st;
}

/* Every proper prefix of the bytes is refused. */
static inline void expect_truncations_refused(const mbuf *b, const char *name) {
    size_t failures_before = (size_t)check_failures;
    for (size_t n = 0; n < b->len && (size_t)check_failures == failures_before; n++) {
        expect_refused_at(__FILE__, __LINE__, b->bytes, n, name, ANY_STATUS, NULL);
        if ((size_t)check_failures != failures_before) fprintf(stderr, "  (truncated to %zu bytes)\n", n);
    }
}

static inline void mb_write_file(const mbuf *b, const char *path) {
    FILE *f = fopen(path, "wb");
    REQUIRE(f != NULL);
    REQUIRE(fwrite(b->bytes, 1, b->len, f) == b->len);
    REQUIRE(fclose(f) == 0);
}

#endif
