/* RWKV World: the vocabulary file rwkv_vocab_v20230424.txt and greedy longest-match encoding.
 *
 * Each line is `<id> <python literal> <byte length>`; the literal is a str (its UTF-8 is the
 * token) or a bytes literal. RWKV's reference tokenizer (rwkv_tokenizer.py) reads it as
 *     idx = int(l[:l.index(' ')]); x = eval(l[l.index(' '):l.rindex(' ')])
 *     x = x.encode("utf-8") if isinstance(x, str) else x; assert len(x) == int(l[l.rindex(' '):])
 * and encodes by taking, at each position, the longest token that matches there. Ids run 1..65529
 * in v20230424; 0 is the end-of-text id models emit, with no text of its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"
#include "utf8_stream.h"

enum { WORLD_N_VOCAB = 65536 };

typedef struct {
    tok_trie trie;
} world;

static void world_free(void *impl) {
    world *w = impl;
    if (w == NULL) return;
    tok_trie_free(&w->trie);
    free(w);
}

static baton_status world_encode(const baton_tokenizer *tok, const uint8_t *text, size_t len,
                                 tok_ids *out, baton_error *err) {
    const world *w = tok->impl;
    size_t i = 0;
    while (i < len) {
        size_t n;
        int32_t id = tok_trie_longest(&w->trie, text + i, len - i, &n);
        /* Every single byte is a token (checked at load), so some prefix always matches. */
        if (id < 0 || n == 0) return baton_fail(err, BATON_ERR_FORMAT, "no token for a byte");
        if (!tok_ids_push(out, id)) return baton_fail(err, BATON_ERR_NOMEM, "no memory");
        i += n;
    }
    return BATON_OK;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Parses the python literal s[0..n) (a str or bytes literal, nothing around it) into out (room
 * for BATON_TOKENIZER_TOKEN_BYTES_MAX + LITERAL_STEP_MAX bytes). Returns NULL and the byte count in
 * *out_len, or a static description of what is wrong. */
enum { LITERAL_STEP_MAX = 4 }; /* the most bytes one character or escape adds */

static const char *parse_literal(const char *s, size_t n, uint8_t *out, size_t *out_len) {
    size_t i = 0, w = 0;
    bool is_bytes = false;
    if (i < n && (s[i] == 'b' || s[i] == 'B')) {
        is_bytes = true;
        i++;
    }
    if (i >= n || (s[i] != '\'' && s[i] != '"')) return "expected a quoted str or bytes literal";
    char quote = s[i++];
    if (n - i < 1 || s[n - 1] != quote) return "literal does not end with its quote";
    size_t end = n - 1; /* the closing quote */
    const size_t cap = BATON_TOKENIZER_TOKEN_BYTES_MAX;
    while (i < end) {
        if (w > cap) return "token longer than the limit";
        uint8_t c = (uint8_t)s[i];
        if (c == (uint8_t)quote) return "unescaped quote inside the literal";
        if (c != '\\') {
            if (c < 0x80) {
                out[w++] = c;
                i++;
                continue;
            }
            if (is_bytes) return "non-ASCII character in a bytes literal";
            uint32_t cp;
            int k = baton_utf8_next((const uint8_t *)s + i, end - i, &cp);
            if (k <= 0) return "invalid UTF-8 in the literal";
            memcpy(out + w, s + i, (size_t)k);
            w += (size_t)k;
            i += (size_t)k;
            continue;
        }
        if (++i >= end) return "backslash at the end of the literal";
        char e = s[i++];
        uint32_t value; /* a code point in a str, a byte in bytes */
        switch (e) {
        case '\\': value = '\\'; break;
        case '\'': value = '\''; break;
        case '"': value = '"'; break;
        case 'a': value = 7; break;
        case 'b': value = 8; break;
        case 't': value = 9; break;
        case 'n': value = 10; break;
        case 'v': value = 11; break;
        case 'f': value = 12; break;
        case 'r': value = 13; break;
        case 'x':
        case 'u':
        case 'U': {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            if (e != 'x' && is_bytes) {
                /* Python keeps an unknown escape in bytes as it is. */
                out[w++] = '\\';
                value = (uint8_t)e;
                break;
            }
            if (end - i < (size_t)digits) return "truncated \\x, \\u or \\U escape";
            value = 0;
            for (int d = 0; d < digits; d++) {
                int h = hex_value(s[i++]);
                if (h < 0) return "bad hex digit in an escape";
                value = value * 16 + (uint32_t)h;
            }
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                value = (uint32_t)(e - '0');
                for (int d = 0; d < 2 && i < end && s[i] >= '0' && s[i] <= '7'; d++) {
                    value = value * 8 + (uint32_t)(s[i++] - '0');
                }
                break;
            }
            if (e == 'N' && !is_bytes) return "\\N{...} escapes are not supported";
            /* Python keeps an unknown escape as it is, backslash included. */
            out[w++] = '\\';
            i--;
            continue;
        }
        if (is_bytes) {
            if (value > 0xFF) return "octal escape past \\377 in a bytes literal";
            out[w++] = (uint8_t)value;
        } else {
            if (value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) {
                return "escape is not a Unicode scalar value";
            }
            w += (size_t)baton_utf8_put(value, out + w);
        }
    }
    if (w > cap) return "token longer than the limit";
    *out_len = w;
    return NULL;
}

/* Parses a decimal number of at most 9 digits (the whole of s[0..n)); -1 when it is not one. */
static long parse_count(const char *s, size_t n) {
    if (n == 0 || n > 9) return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

baton_status tok_world_load(baton_tokenizer *tok, const char *path, const char *data, size_t len,
                            baton_error *err) {
    baton_status st;
    world *w = calloc(1, sizeof *w);
    if (w == NULL) return baton_fail(err, BATON_ERR_NOMEM, "%s: no memory", path);
    tok->impl = w;
    tok->impl_free = world_free;
    tok->encode = world_encode;
    tok->eot = 0;
    if (!tok_trie_init(&w->trie)) return baton_fail(err, BATON_ERR_NOMEM, "%s: no memory", path);
    /* The file is at most BATON_TOKENIZER_FILE_MAX bytes and each token's bytes are no more than
     * its literal's, so len bytes hold every token. */
    st = tok_alloc_tokens(tok, WORLD_N_VOCAB, len, err);
    if (st != BATON_OK) return st;
    uint32_t *start = calloc(WORLD_N_VOCAB, sizeof *start); /* in pool, file order */
    uint32_t *length = calloc(WORLD_N_VOCAB, sizeof *length);
    uint8_t *bytes = malloc(BATON_TOKENIZER_TOKEN_BYTES_MAX + LITERAL_STEP_MAX);
    char *pool = tok->token_data;
    if (start == NULL || length == NULL || bytes == NULL) {
        st = baton_fail(err, BATON_ERR_NOMEM, "%s: no memory", path);
        goto out;
    }
    size_t pool_n = 0, line_no = 0, n_tokens = 0;
    for (size_t pos = 0; pos < len;) {
        line_no++;
        const char *line = data + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - line) : len - pos;
        pos += n + (nl != NULL);
        if (n > 0 && line[n - 1] == '\r') n--;
        if (n == 0) continue;
        const char *sp1 = memchr(line, ' ', n);
        const char *sp2 = line + n;
        while (sp2 > line && sp2[-1] != ' ') sp2--;
        if (sp1 == NULL || sp2 - 1 <= sp1) {
            st = baton_fail(err, BATON_ERR_FORMAT, "%s:%zu: expected '<id> <literal> <length>'",
                            path, line_no);
            goto out;
        }
        long id = parse_count(line, (size_t)(sp1 - line));
        long declared = parse_count(sp2, (size_t)(line + n - sp2));
        if (id < 1 || id >= WORLD_N_VOCAB) {
            st = baton_fail(err, BATON_ERR_FORMAT, "%s:%zu: id is not a number in [1, %d]", path,
                            line_no, WORLD_N_VOCAB - 1);
            goto out;
        }
        if (declared < 1) {
            st = baton_fail(err, BATON_ERR_FORMAT, "%s:%zu: length is not a positive number", path,
                            line_no);
            goto out;
        }
        size_t got;
        const char *bad = parse_literal(sp1 + 1, (size_t)(sp2 - 1 - (sp1 + 1)), bytes, &got);
        if (bad != NULL) {
            st = baton_fail(err, BATON_ERR_FORMAT, "%s:%zu: %s", path, line_no, bad);
            goto out;
        }
        if (got != (size_t)declared) {
            st = baton_fail(err, BATON_ERR_FORMAT,
                            "%s:%zu: literal has %zu bytes but the line says %ld", path, line_no,
                            got, declared);
            goto out;
        }
        if (length[id] != 0) {
            st = baton_fail(err, BATON_ERR_FORMAT, "%s:%zu: duplicate id %ld", path, line_no, id);
            goto out;
        }
        int32_t old;
        st = tok_trie_insert(&w->trie, bytes, got, (int32_t)id, &old);
        if (st == BATON_ERR_FORMAT) {
            st = baton_fail(err, BATON_ERR_FORMAT, "%s:%zu: id %ld has the same bytes as id %d",
                            path, line_no, id, (int)old);
            goto out;
        }
        if (st != BATON_OK) {
            st = baton_fail(err, st, "%s: no memory", path);
            goto out;
        }
        if (got > len - pool_n) { /* cannot happen: a literal is at least as long as its bytes */
            st =
                baton_fail(err, BATON_ERR_FORMAT, "%s:%zu: tokens outgrow the file", path, line_no);
            goto out;
        }
        memcpy(pool + pool_n, bytes, got);
        start[id] = (uint32_t)pool_n;
        length[id] = (uint32_t)got;
        pool_n += got;
        n_tokens++;
    }
    if (n_tokens == 0) {
        st = baton_fail(err, BATON_ERR_FORMAT, "%s: no tokens in it (not a World vocabulary?)",
                        path);
        goto out;
    }
    for (int b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        size_t n;
        if (tok_trie_longest(&w->trie, &byte, 1, &n) < 0) {
            st = baton_fail(err, BATON_ERR_FORMAT, "%s: no token for the single byte 0x%02x", path,
                            b);
            goto out;
        }
    }
    /* Tokens were stored in file order; lay them out in id order so that off[id + 1] - off[id]
     * is token id's length. */
    char *sorted = malloc(pool_n ? pool_n : 1);
    if (sorted == NULL) {
        st = baton_fail(err, BATON_ERR_NOMEM, "%s: no memory", path);
        goto out;
    }
    uint32_t at = 0;
    for (int id = 0; id < WORLD_N_VOCAB; id++) {
        memcpy(sorted + at, pool + start[id], length[id]);
        at += length[id];
        tok->token_off[id + 1] = at;
    }
    free(tok->token_data);
    tok->token_data = sorted;
    st = BATON_OK;
out:
    free(start);
    free(length);
    free(bytes);
    return st;
}
