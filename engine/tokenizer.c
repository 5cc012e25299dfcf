/* The tokenizer handle: opening by spec, the byte tokenizer, decoding and the streaming decoder.
 * The NeoX BPE and World loaders and encoders are in tokenizer_bpe.c and tokenizer_world.c. */
#include "tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"
#include "utf8_stream.h"

bool tok_ids_push(tok_ids *a, int32_t id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *grown = realloc(a->v, cap * sizeof *grown);
        if (grown == NULL) return false;
        a->v = grown;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return true;
}

baton_status tok_alloc_tokens(baton_tokenizer *tok, int32_t n_vocab, size_t total_bytes,
                              baton_error *err) {
    tok->n_vocab = n_vocab;
    tok->token_off = calloc((size_t)n_vocab + 1, sizeof *tok->token_off);
    tok->token_data = malloc(total_bytes ? total_bytes : 1);
    if (tok->token_off == NULL || tok->token_data == NULL) {
        return baton_fail(err, BATON_ERR_NOMEM, "no memory for %d tokens", (int)n_vocab);
    }
    return BATON_OK;
}

baton_status tok_read_file(const char *path, char **data, size_t *len, baton_error *err) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) return baton_fail(err, BATON_ERR_IO, "%s: %s", path, strerror(errno));
    baton_status st = BATON_OK;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (buf == NULL) {
        st = baton_fail(err, BATON_ERR_NOMEM, "%s: no memory to read it", path);
        goto out_close;
    }
    for (;;) {
        if (n == cap) {
            if (cap >= BATON_TOKENIZER_FILE_MAX) {
                if (fgetc(f) == EOF) break; /* exactly at the limit */
                st = baton_fail(err, BATON_ERR_FORMAT, "%s: larger than %d MiB, not a tokenizer",
                                path, BATON_TOKENIZER_FILE_MAX >> 20);
                goto out_free;
            }
            cap *= 2;
            char *grown = realloc(buf, cap + 1);
            if (grown == NULL) {
                st = baton_fail(err, BATON_ERR_NOMEM, "%s: no memory to read it", path);
                goto out_free;
            }
            buf = grown;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        st = baton_fail(err, BATON_ERR_IO, "%s: read failed", path);
        goto out_free;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    goto out_close;
out_free:
    free(buf);
out_close:
    fclose(f);
    return st;
}

/* The byte vocabulary: token id = byte value. */
static baton_status bytes_encode(const baton_tokenizer *tok, const uint8_t *text, size_t len,
                                 tok_ids *out, baton_error *err) {
    (void)tok;
    for (size_t i = 0; i < len; i++) {
        if (!tok_ids_push(out, text[i])) return baton_fail(err, BATON_ERR_NOMEM, "no memory");
    }
    return BATON_OK;
}

static baton_status bytes_load(baton_tokenizer *tok, baton_error *err) {
    baton_status st = tok_alloc_tokens(tok, 256, 256, err);
    if (st != BATON_OK) return st;
    for (int i = 0; i < 256; i++) {
        tok->token_data[i] = (char)i;
        tok->token_off[i + 1] = (uint32_t)i + 1;
    }
    tok->eot = -1;
    tok->encode = bytes_encode;
    return BATON_OK;
}

baton_status baton_tokenizer_open(const char *spec, baton_tokenizer **out, baton_error *err) {
    *out = NULL;
    baton_tokenizer *tok = calloc(1, sizeof *tok);
    if (tok == NULL) return baton_fail(err, BATON_ERR_NOMEM, "no memory for a tokenizer");
    baton_status st;
    if (strcmp(spec, "bytes") == 0) {
        tok->kind = BATON_TOKENIZER_BYTES;
        st = bytes_load(tok, err);
    } else {
        char *data;
        size_t len;
        st = tok_read_file(spec, &data, &len, err);
        if (st == BATON_OK) {
            size_t i = 0;
            while (i < len && strchr(" \t\r\n", data[i]) != NULL) i++;
            if (i < len && data[i] == '{') {
                tok->kind = BATON_TOKENIZER_BPE;
                st = tok_bpe_load(tok, spec, data, len, err);
            } else {
                tok->kind = BATON_TOKENIZER_WORLD;
                st = tok_world_load(tok, spec, data, len, err);
            }
            free(data);
        }
    }
    if (st != BATON_OK) {
        baton_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return BATON_OK;
}

void baton_tokenizer_free(baton_tokenizer *tok) {
    if (tok == NULL) return;
    if (tok->impl_free != NULL) tok->impl_free(tok->impl);
    free(tok->token_off);
    free(tok->token_data);
    free(tok);
}

baton_tokenizer_kind baton_tokenizer_get_kind(const baton_tokenizer *tok) { return tok->kind; }

int32_t baton_tokenizer_n_vocab(const baton_tokenizer *tok) { return tok->n_vocab; }

int32_t baton_tokenizer_eot(const baton_tokenizer *tok) { return tok->eot; }

baton_status baton_tokenizer_encode(const baton_tokenizer *tok, const char *text, size_t len,
                                    int32_t **ids, size_t *n_ids, baton_error *err) {
    *ids = NULL;
    *n_ids = 0;
    if (len > BATON_TOKENIZER_TEXT_MAX) {
        return baton_fail(err, BATON_ERR_ARG, "text of %zu bytes is over the %zu-byte limit", len,
                          BATON_TOKENIZER_TEXT_MAX);
    }
    tok_ids out = {0};
    baton_status st = tok->encode(tok, (const uint8_t *)text, len, &out, err);
    if (st == BATON_OK && out.v == NULL) {
        out.v = malloc(sizeof *out.v);
        if (out.v == NULL) st = baton_fail(err, BATON_ERR_NOMEM, "no memory");
    }
    if (st != BATON_OK) {
        free(out.v);
        return st;
    }
    *ids = out.v;
    *n_ids = out.n;
    return BATON_OK;
}

const char *baton_tokenizer_token_bytes(const baton_tokenizer *tok, int32_t id, size_t *len) {
    if (id < 0 || id >= tok->n_vocab) {
        *len = 0;
        return NULL;
    }
    *len = tok->token_off[id + 1] - tok->token_off[id];
    return tok->token_data + tok->token_off[id];
}

baton_status baton_tokenizer_decode(const baton_tokenizer *tok, const int32_t *ids, size_t n_ids,
                                    char **text, size_t *len, baton_error *err) {
    *text = NULL;
    *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        size_t n;
        if (baton_tokenizer_token_bytes(tok, ids[i], &n) == NULL) {
            return baton_fail(err, BATON_ERR_ARG, "token id %ld (at %zu) is outside [0, %ld)",
                              (long)ids[i], i, (long)tok->n_vocab);
        }
        if (n > BATON_TOKENIZER_TEXT_MAX - total) {
            return baton_fail(err, BATON_ERR_ARG, "decoded text is over %zu bytes",
                              BATON_TOKENIZER_TEXT_MAX);
        }
        total += n;
    }
    char *buf = malloc(total + 1);
    if (buf == NULL) return baton_fail(err, BATON_ERR_NOMEM, "no memory for %zu bytes", total);
    size_t w = 0;
    for (size_t i = 0; i < n_ids; i++) {
        size_t n;
        const char *bytes = baton_tokenizer_token_bytes(tok, ids[i], &n);
        memcpy(buf + w, bytes, n);
        w += n;
    }
    buf[w] = '\0';
    *text = buf;
    *len = w;
    return BATON_OK;
}

struct baton_detok_stream {
    const baton_tokenizer *tok;
    baton_utf8_stream utf8;
    uint8_t *out; /* room for BATON_UTF8_STREAM_OUT_MAX(the longest token) */
};

baton_status baton_detok_stream_open(const baton_tokenizer *tok, baton_detok_stream **out,
                                     baton_error *err) {
    *out = NULL;
    size_t longest = 0;
    for (int32_t id = 0; id < tok->n_vocab; id++) {
        size_t n = tok->token_off[id + 1] - tok->token_off[id];
        if (n > longest) longest = n;
    }
    baton_detok_stream *s = calloc(1, sizeof *s);
    if (s != NULL) s->out = malloc(BATON_UTF8_STREAM_OUT_MAX(longest));
    if (s == NULL || s->out == NULL) {
        baton_detok_stream_free(s);
        return baton_fail(err, BATON_ERR_NOMEM, "no memory for a decoding stream");
    }
    s->tok = tok;
    *out = s;
    return BATON_OK;
}

void baton_detok_stream_free(baton_detok_stream *s) {
    if (s == NULL) return;
    free(s->out);
    free(s);
}

baton_status baton_detok_stream_push(baton_detok_stream *s, int32_t id, const char **text,
                                     size_t *len, baton_error *err) {
    *text = (const char *)s->out;
    *len = 0;
    size_t n;
    const char *bytes = baton_tokenizer_token_bytes(s->tok, id, &n);
    if (bytes == NULL) {
        return baton_fail(err, BATON_ERR_ARG, "token id %ld is outside [0, %ld)", (long)id,
                          (long)s->tok->n_vocab);
    }
    *len = baton_utf8_stream_feed(&s->utf8, (const uint8_t *)bytes, n, s->out);
    return BATON_OK;
}

void baton_detok_stream_flush(baton_detok_stream *s, const char **text, size_t *len) {
    *text = (const char *)s->out;
    *len = baton_utf8_stream_flush(&s->utf8, s->out);
}
