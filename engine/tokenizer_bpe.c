/* GPT-NeoX-20B's tokenizer: a Hugging Face tokenizer.json with a byte-level BPE model, encoded
 * exactly as the Hugging Face tokenizers library does it:
 *
 *   1. Added tokens whose `normalized` is false (the special ones, e.g. <|endoftext|>) are found in
 *      the raw text, leftmost-longest, and become their ids; the text between them goes on.
 *   2. NFC (the `normalizer`), then added tokens whose `normalized` is true (NeoX's runs of 2..24
 *      spaces, ids 50254..50276) are found the same way in the normalized text.
 *   3. The ByteLevel pre-tokenizer splits what is left with GPT-2's regex
 *        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      (matched by hand below, with utf8proc's categories) and maps each byte of a piece to its
 *      printable stand-in (GPT-2's bytes_to_unicode).
 *   4. BPE on each piece: merge the adjacent pair of lowest merge rank, leftmost first, until no
 *      pair has a merge; the same priority-queue walk as tokenizers' Word::merge_all.
 *
 * Decoding maps each token's stand-ins back to bytes; an added token decodes to its content. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer_internal.h"
#include "utf8_stream.h"

enum { BPE_MERGES_MAX = 1 << 22, BYTE_LEVEL_CP_END = 256 + 68 };

typedef struct {
    /* The vocabulary, string -> id, in one open-addressing table of entry index + 1 (0 empty). */
    char *str_pool;
    uint32_t *str_off, *str_len;
    int32_t *str_id;
    uint32_t n_str;
    uint32_t *str_slot;
    uint32_t str_cap; /* a power of two */

    /* Merges, (left id, right id) -> (rank, merged id); merge_new -1 marks an empty slot. */
    uint64_t *merge_key;
    uint32_t *merge_rank;
    int32_t *merge_new;
    uint32_t merge_cap; /* a power of two */

    uint32_t byte_cp[256];              /* GPT-2 bytes_to_unicode */
    int16_t cp_byte[BYTE_LEVEL_CP_END]; /* its inverse, -1 where none */
    /* The vocab id of each byte's stand-in; -1 for the bytes no UTF-8 holds (C0, C1, F5..FF) where
     * the vocab leaves them out, as GPT-NeoX-20B's does. */
    int32_t byte_id[256];

    tok_trie added_raw, added_norm; /* added tokens matched before / after normalization */
    uint32_t n_added_raw, n_added_norm;
    bool nfc;
    bool ignore_merges;
} bpe;

static void bpe_free(void *impl) {
    bpe *b = impl;
    if (b == NULL) return;
    free(b->str_pool);
    free(b->str_off);
    free(b->str_len);
    free(b->str_id);
    free(b->str_slot);
    free(b->merge_key);
    free(b->merge_rank);
    free(b->merge_new);
    tok_trie_free(&b->added_raw);
    tok_trie_free(&b->added_norm);
    free(b);
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_pair(uint64_t key) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    key *= 0xc4ceb9fe1a85ec53ULL;
    key ^= key >> 33;
    return key;
}

static uint32_t pow2_at_least(uint32_t n) {
    uint32_t cap = 16;
    while (cap < n) cap *= 2;
    return cap;
}

/* The slot of string s in the vocab table: its entry index + 1, or the empty slot it would take. */
static uint32_t *vocab_slot(const bpe *b, const char *s, size_t n) {
    uint32_t mask = b->str_cap - 1;
    for (uint32_t i = (uint32_t)hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        uint32_t e = b->str_slot[i];
        if (e == 0) return &b->str_slot[i];
        e--;
        if (b->str_len[e] == n && memcmp(b->str_pool + b->str_off[e], s, n) == 0) {
            return &b->str_slot[i];
        }
    }
}

static int32_t vocab_find(const bpe *b, const char *s, size_t n) {
    uint32_t e = *vocab_slot(b, s, n);
    return e == 0 ? -1 : b->str_id[e - 1];
}

static bool merge_find(const bpe *b, int32_t left, int32_t right, uint32_t *rank, int32_t *merged) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    uint32_t mask = b->merge_cap - 1;
    for (uint32_t i = (uint32_t)hash_pair(key) & mask;; i = (i + 1) & mask) {
        if (b->merge_new[i] < 0) return false;
        if (b->merge_key[i] == key) {
            *rank = b->merge_rank[i];
            *merged = b->merge_new[i];
            return true;
        }
    }
}

/* Adds or replaces a merge; a pair listed twice keeps its later rank, as tokenizers' HashMap
 * collect does. */
static void merge_put(bpe *b, int32_t left, int32_t right, uint32_t rank, int32_t merged) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    uint32_t mask = b->merge_cap - 1;
    uint32_t i = (uint32_t)hash_pair(key) & mask;
    while (b->merge_new[i] >= 0 && b->merge_key[i] != key) i = (i + 1) & mask;
    b->merge_key[i] = key;
    b->merge_rank[i] = rank;
    b->merge_new[i] = merged;
}

/* ---- Encoding ---- */

typedef struct {
    int32_t id;
    int32_t prev, next; /* neighbours in the word, -1 at the ends */
    bool alive;
} bpe_symbol;

typedef struct {
    uint32_t rank;
    uint32_t pos; /* the left symbol */
    int32_t merged;
} bpe_merge;

enum { CLS_SPACE, CLS_LETTER, CLS_NUMBER, CLS_OTHER };

typedef struct {
    uint32_t off; /* byte offset in the piece */
    uint32_t cp;  /* code point, or UINT32_MAX for an invalid byte sequence */
    uint8_t cls;  /* CLS_* */
} bpe_char;

/* Scratch space for one encode call, so that a tokenizer can be shared by threads. */
typedef struct {
    const bpe *b;
    tok_ids *out;
    int bad_byte; /* a byte with no token that stopped encoding, else -1 */
    uint8_t *norm;
    size_t norm_cap;
    bpe_char *ch; /* [n + 1] the characters of a piece, and its end */
    size_t ch_cap;
    bpe_symbol *sym;
    size_t sym_cap;
    bpe_merge *heap;
    size_t heap_n, heap_cap;
    char *word; /* a piece in byte-level form, for ignore_merges */
    size_t word_cap;
} bpe_ctx;

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t cap2 = *cap ? *cap : 64;
    while (cap2 < need) cap2 *= 2;
    void *grown = realloc(*p, cap2 * elem);
    if (grown == NULL) return false;
    *p = grown;
    *cap = cap2;
    return true;
}

static bool heap_less(const bpe_merge *x, const bpe_merge *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static bool heap_push(bpe_ctx *c, bpe_merge m) {
    if (!grow((void **)&c->heap, &c->heap_cap, c->heap_n + 1, sizeof *c->heap)) return false;
    size_t i = c->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(&m, &c->heap[parent])) break;
        c->heap[i] = c->heap[parent];
        i = parent;
    }
    c->heap[i] = m;
    return true;
}

static bpe_merge heap_pop(bpe_ctx *c) {
    bpe_merge top = c->heap[0];
    bpe_merge last = c->heap[--c->heap_n];
    size_t i = 0, n = c->heap_n;
    for (;;) {
        size_t kid = 2 * i + 1;
        if (kid >= n) break;
        if (kid + 1 < n && heap_less(&c->heap[kid + 1], &c->heap[kid])) kid++;
        if (!heap_less(&c->heap[kid], &last)) break;
        c->heap[i] = c->heap[kid];
        i = kid;
    }
    if (n > 0) c->heap[i] = last;
    return top;
}

/* Pushes the merge of symbols left and right, if the pair has one. */
static bool offer_pair(bpe_ctx *c, int32_t left) {
    const bpe_symbol *l = &c->sym[left];
    if (l->next < 0) return true;
    uint32_t rank;
    int32_t merged;
    if (!merge_find(c->b, l->id, c->sym[l->next].id, &rank, &merged)) return true;
    return heap_push(c, (bpe_merge){rank, (uint32_t)left, merged});
}

/* BPE on one pre-tokenized piece w[0..n). */
static bool bpe_word(bpe_ctx *c, const uint8_t *w, size_t n) {
    const bpe *b = c->b;
    for (size_t i = 0; i < n; i++) {
        if (b->byte_id[w[i]] < 0) {
            c->bad_byte = w[i];
            return false;
        }
    }
    if (n == 1) return tok_ids_push(c->out, b->byte_id[w[0]]);
    if (b->ignore_merges) {
        /* With ignore_merges a piece that is itself in the vocab is that token. */
        if (!grow((void **)&c->word, &c->word_cap, 2 * n, 1)) return false;
        size_t len = 0;
        for (size_t i = 0; i < n; i++)
            len += (size_t)baton_utf8_put(b->byte_cp[w[i]], (uint8_t *)c->word + len);
        int32_t id = vocab_find(b, c->word, len);
        if (id >= 0) return tok_ids_push(c->out, id);
    }
    if (!grow((void **)&c->sym, &c->sym_cap, n, sizeof *c->sym)) return false;
    for (size_t i = 0; i < n; i++) {
        c->sym[i] =
            (bpe_symbol){b->byte_id[w[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1, true};
    }
    c->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (!offer_pair(c, (int32_t)i)) return false;
    }
    while (c->heap_n > 0) {
        bpe_merge top = heap_pop(c);
        bpe_symbol *l = &c->sym[top.pos];
        if (!l->alive || l->next < 0) continue;
        /* Skip entries made stale by an earlier merge. */
        uint32_t rank;
        int32_t merged;
        if (!merge_find(b, l->id, c->sym[l->next].id, &rank, &merged) || merged != top.merged) {
            continue;
        }
        bpe_symbol *r = &c->sym[l->next];
        l->id = top.merged;
        l->next = r->next;
        r->alive = false;
        if (r->next >= 0) c->sym[r->next].prev = (int32_t)top.pos;
        if (l->prev >= 0 && !offer_pair(c, l->prev)) return false;
        if (!offer_pair(c, (int32_t)top.pos)) return false;
    }
    for (int32_t i = 0; i >= 0; i = c->sym[i].next) {
        if (!tok_ids_push(c->out, c->sym[i].id)) return false;
    }
    return true;
}

static bool is_white_space(uint32_t cp) {
    /* Unicode's White_Space property, which is what \s matches in the tokenizers' regex. */
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

static uint8_t char_class(uint32_t cp) {
    if (cp == UINT32_MAX) return CLS_OTHER;
    if (is_white_space(cp)) return CLS_SPACE;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: return CLS_LETTER;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return CLS_NUMBER;
    default: return CLS_OTHER;
    }
}

/* The end (in characters) of the regex match that starts at character i of n. */
static size_t regex_match(const bpe_ctx *c, size_t i, size_t n) {
    const bpe_char *ch = c->ch;
    /* 's|'t|'re|'ve|'m|'ll|'d */
    if (ch[i].cp == '\'' && i + 1 < n) {
        uint32_t c1 = ch[i + 1].cp;
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
        if (i + 2 < n) {
            uint32_t c2 = ch[i + 2].cp;
            if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
                return i + 3;
            }
        }
    }
    /*  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+ */
    size_t k = i;
    if (ch[i].cp == ' ' && i + 1 < n && ch[i + 1].cls != CLS_SPACE) k = i + 1;
    if (ch[k].cls != CLS_SPACE) {
        size_t j = k + 1;
        while (j < n && ch[j].cls == ch[k].cls) j++;
        return j;
    }
    /* \s+(?!\S) | \s+ : a run of white space, less its last character when something else follows
     * and the run has more than one. */
    size_t j = i + 1;
    while (j < n && ch[j].cls == CLS_SPACE) j++;
    if (j < n && j - i >= 2) return j - 1;
    return j;
}

/* Steps 3 and 4 on a piece with no added tokens in it. */
static bool pre_tokenize(bpe_ctx *c, const uint8_t *s, size_t n) {
    if (n == 0) return true;
    if (!grow((void **)&c->ch, &c->ch_cap, n + 1, sizeof *c->ch)) return false;
    size_t nc = 0;
    for (size_t i = 0; i < n;) {
        uint32_t code;
        int r = baton_utf8_next(s + i, n - i, &code);
        size_t step;
        if (r > 0) {
            step = (size_t)r;
        } else {
            /* Invalid or cut-off UTF-8: a run of symbols the regex's [^\s\p{L}\p{N}] takes. */
            code = UINT32_MAX;
            step = r < 0 ? (size_t)-r : n - i;
        }
        c->ch[nc++] = (bpe_char){(uint32_t)i, code, char_class(code)};
        i += step;
    }
    c->ch[nc].off = (uint32_t)n;
    for (size_t i = 0; i < nc;) {
        size_t j = regex_match(c, i, nc);
        if (!bpe_word(c, s + c->ch[i].off, c->ch[j].off - c->ch[i].off)) return false;
        i = j;
    }
    return true;
}

/* Splits s[0..n) on the added tokens in trie (leftmost-longest): their ids go out, the text
 * between them goes to next. */
static bool split_added(bpe_ctx *c, const tok_trie *trie, uint32_t n_added, const uint8_t *s,
                        size_t n, bool (*next)(bpe_ctx *, const uint8_t *, size_t)) {
    if (n_added == 0) return next(c, s, n);
    size_t gap = 0;
    for (size_t i = 0; i < n;) {
        size_t len;
        int32_t id = tok_trie_longest(trie, s + i, n - i, &len);
        if (id < 0) {
            i++;
            continue;
        }
        if (!next(c, s + gap, i - gap) || !tok_ids_push(c->out, id)) return false;
        i += len;
        gap = i;
    }
    return next(c, s + gap, n - gap);
}

static bool split_normalized(bpe_ctx *c, const uint8_t *s, size_t n) {
    return split_added(c, &c->b->added_norm, c->b->n_added_norm, s, n, pre_tokenize);
}

/* NFC of s[0..n) into c->norm, *out_n bytes. Runs of valid UTF-8 are normalized; invalid bytes
 * (which Hugging Face never sees: its input is a Rust str) pass through unchanged. */
static bool nfc(bpe_ctx *c, const uint8_t *s, size_t n, size_t *out_n) {
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        size_t start = i;
        bool ascii = true;
        while (i < n) {
            uint32_t cp;
            int r = baton_utf8_next(s + i, n - i, &cp);
            if (r <= 0) break;
            ascii = ascii && r == 1;
            i += (size_t)r;
        }
        const uint8_t *run = s + start;
        size_t run_n = i - start;
        utf8proc_uint8_t *mapped = NULL;
        if (!ascii) {
            utf8proc_ssize_t m = utf8proc_map(run, (utf8proc_ssize_t)run_n, &mapped,
                                              UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            if (m < 0) return false; /* only memory: the run is valid UTF-8 */
            run = mapped;
            run_n = (size_t)m;
        }
        /* The invalid bytes after the run (or a cut-off character at the end) go as they are. */
        size_t bad = 0;
        if (i < n) {
            uint32_t cp;
            int r = baton_utf8_next(s + i, n - i, &cp);
            bad = r < 0 ? (size_t)-r : n - i;
        }
        if (!grow((void **)&c->norm, &c->norm_cap, w + run_n + bad, 1)) {
            free(mapped);
            return false;
        }
        memcpy(c->norm + w, run, run_n);
        memcpy(c->norm + w + run_n, s + i, bad);
        w += run_n + bad;
        i += bad;
        free(mapped);
    }
    *out_n = w;
    return true;
}

static bool normalize_piece(bpe_ctx *c, const uint8_t *s, size_t n) {
    if (n == 0) return true;
    if (!c->b->nfc) return split_normalized(c, s, n);
    size_t m;
    if (!nfc(c, s, n, &m)) return false;
    /* c->norm is free again once split_normalized returns, before the next piece needs it. */
    return split_normalized(c, c->norm, m);
}

static baton_status bpe_encode(const baton_tokenizer *tok, const uint8_t *text, size_t len,
                               tok_ids *out, baton_error *err) {
    const bpe *b = tok->impl;
    bpe_ctx c = {.b = b, .out = out, .bad_byte = -1};
    bool ok = split_added(&c, &b->added_raw, b->n_added_raw, text, len, normalize_piece);
    free(c.norm);
    free(c.ch);
    free(c.sym);
    free(c.heap);
    free(c.word);
    if (ok) return BATON_OK;
    if (c.bad_byte >= 0) {
        return baton_fail(err, BATON_ERR_ARG,
                          "text holds byte 0x%02x, which is not UTF-8 and has no token in this "
                          "vocabulary", (unsigned)c.bad_byte);
    }
    return baton_fail(err, BATON_ERR_NOMEM, "no memory to encode %zu bytes", len);
}

/* ---- Loading ---- */

static void make_byte_level(bpe *b) {
    /* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the rest (controls,
     * space, DEL, NBSP, soft hyphen) for U+0100 onwards, in byte order. */
    int next = 256;
    for (int i = 0; i < BYTE_LEVEL_CP_END; i++) b->cp_byte[i] = -1;
    for (int x = 0; x < 256; x++) {
        bool printable = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE);
        b->byte_cp[x] = printable ? (uint32_t)x : (uint32_t)next++;
        b->cp_byte[b->byte_cp[x]] = (int16_t)x;
    }
}

/* Writes the bytes a vocab string stands for into out; returns their count. A string with a
 * character outside the byte-level alphabet stands for its own UTF-8, as tokenizers' ByteLevel
 * decoder has it. */
static size_t byte_level_decode(const bpe *b, const char *s, size_t n, char *out) {
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int r = baton_utf8_next((const uint8_t *)s + i, n - i, &cp);
        if (r <= 0 || cp >= BYTE_LEVEL_CP_END || b->cp_byte[cp] < 0) {
            memcpy(out, s, n);
            return n;
        }
        out[w++] = (char)b->cp_byte[cp];
        i += (size_t)r;
    }
    return w;
}

/* An integer JSON number in [0, max], or -1. */
static long json_index(const cJSON *item, long max) {
    if (!cJSON_IsNumber(item)) return -1;
    double v = item->valuedouble;
    if (!(v >= 0 && v <= (double)max) || floor(v) != v) return -1;
    return (long)v;
}

/* True when item is absent, null or false (the default for an option Baton does not implement). */
static bool json_off(const cJSON *obj, const char *name) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    return item == NULL || cJSON_IsNull(item) || cJSON_IsFalse(item) ||
           (cJSON_IsString(item) && item->valuestring[0] == '\0') ||
           (cJSON_IsNumber(item) && item->valuedouble == 0);
}

static bool json_type_is(const cJSON *obj, const char *type) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "type");
    return cJSON_IsString(t) && strcmp(t->valuestring, type) == 0;
}

static const char *json_type_name(const cJSON *obj) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "type");
    return cJSON_IsString(t) ? t->valuestring : "(no type)";
}

/* Checks the pipeline around the model: NFC or no normalizer, and a ByteLevel pre-tokenizer with
 * the regex and no prefix space. */
static baton_status check_pipeline(bpe *b, const char *path, const cJSON *root, baton_error *err) {
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm == NULL || cJSON_IsNull(norm)) {
        b->nfc = false;
    } else if (cJSON_IsObject(norm) && json_type_is(norm, "NFC")) {
        b->nfc = true;
    } else {
        return baton_fail(err, BATON_ERR_UNSUPPORTED,
                          "%s: normalizer '%s' is not supported (only NFC or none)", path,
                          cJSON_IsObject(norm) ? json_type_name(norm) : "?");
    }
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (!cJSON_IsObject(pre) || !json_type_is(pre, "ByteLevel")) {
        return baton_fail(err, BATON_ERR_UNSUPPORTED,
                          "%s: pre_tokenizer '%s' is not supported (only ByteLevel)", path,
                          cJSON_IsObject(pre) ? json_type_name(pre) : "none");
    }
    const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(pre, "add_prefix_space");
    if (!cJSON_IsFalse(prefix)) {
        return baton_fail(err, BATON_ERR_UNSUPPORTED,
                          "%s: ByteLevel add_prefix_space must be false", path);
    }
    const cJSON *regex = cJSON_GetObjectItemCaseSensitive(pre, "use_regex");
    if (regex != NULL && !cJSON_IsTrue(regex)) {
        return baton_fail(err, BATON_ERR_UNSUPPORTED, "%s: ByteLevel use_regex must be true", path);
    }
    return BATON_OK;
}

typedef struct {
    const char *content; /* in the cJSON tree */
    int32_t id;
    bool normalized;
} added_token;

static baton_status read_added(const char *path, const cJSON *root, added_token **out, size_t *n,
                               baton_error *err) {
    *out = NULL;
    *n = 0;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (list == NULL || cJSON_IsNull(list)) return BATON_OK;
    if (!cJSON_IsArray(list)) {
        return baton_fail(err, BATON_ERR_FORMAT, "%s: added_tokens is not an array", path);
    }
    size_t count = (size_t)cJSON_GetArraySize(list);
    if (count > BATON_TOKENIZER_VOCAB_MAX) {
        return baton_fail(err, BATON_ERR_FORMAT, "%s: more than %d added tokens", path,
                          BATON_TOKENIZER_VOCAB_MAX);
    }
    added_token *a = calloc(count ? count : 1, sizeof *a);
    if (a == NULL) return baton_fail(err, BATON_ERR_NOMEM, "%s: no memory", path);
    size_t i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, list) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(t, "content");
        long id =
            json_index(cJSON_GetObjectItemCaseSensitive(t, "id"), BATON_TOKENIZER_VOCAB_MAX - 1);
        if (!cJSON_IsObject(t) || !cJSON_IsString(content) || id < 0) {
            free(a);
            return baton_fail(err, BATON_ERR_FORMAT,
                              "%s: added_tokens[%zu] lacks a content string or an id in [0, %d)",
                              path, i, BATON_TOKENIZER_VOCAB_MAX);
        }
        size_t len = strlen(content->valuestring);
        if (len == 0 || len > BATON_TOKENIZER_TOKEN_BYTES_MAX) {
            free(a);
            return baton_fail(err, BATON_ERR_FORMAT,
                              "%s: added token %ld is empty or over %d bytes", path, id,
                              BATON_TOKENIZER_TOKEN_BYTES_MAX);
        }
        if (!json_off(t, "lstrip") || !json_off(t, "rstrip") || !json_off(t, "single_word")) {
            free(a);
            return baton_fail(err, BATON_ERR_UNSUPPORTED,
                              "%s: added token %ld uses lstrip, rstrip or single_word", path, id);
        }
        const cJSON *special = cJSON_GetObjectItemCaseSensitive(t, "special");
        const cJSON *normalized = cJSON_GetObjectItemCaseSensitive(t, "normalized");
        /* tokenizers' default: special tokens are matched in the raw text, others normalized. */
        bool norm = cJSON_IsBool(normalized) ? cJSON_IsTrue(normalized) : !cJSON_IsTrue(special);
        a[i++] = (added_token){content->valuestring, (int32_t)id, norm};
    }
    *out = a;
    *n = i;
    return BATON_OK;
}

static baton_status read_vocab(bpe *b, const char *path, const cJSON *vocab, int32_t *max_id,
                               baton_error *err) {
    size_t count = (size_t)cJSON_GetArraySize(vocab);
    if (count == 0 || count > BATON_TOKENIZER_VOCAB_MAX) {
        return baton_fail(err, BATON_ERR_FORMAT, "%s: model.vocab has %zu entries, not 1..%d", path,
                          count, BATON_TOKENIZER_VOCAB_MAX);
    }
    size_t pool = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        size_t len = e->string != NULL ? strlen(e->string) : 0;
        if (len == 0 || len > BATON_TOKENIZER_TOKEN_BYTES_MAX) {
            return baton_fail(err, BATON_ERR_FORMAT,
                              "%s: model.vocab has an empty token or one over %d bytes", path,
                              BATON_TOKENIZER_TOKEN_BYTES_MAX);
        }
        pool += len;
    }
    b->str_pool = malloc(pool);
    b->str_off = malloc(count * sizeof *b->str_off);
    b->str_len = malloc(count * sizeof *b->str_len);
    b->str_id = malloc(count * sizeof *b->str_id);
    b->str_cap = pow2_at_least((uint32_t)count * 2);
    b->str_slot = calloc(b->str_cap, sizeof *b->str_slot);
    if (b->str_pool == NULL || b->str_off == NULL || b->str_len == NULL || b->str_id == NULL ||
        b->str_slot == NULL) {
        return baton_fail(err, BATON_ERR_NOMEM, "%s: no memory for the vocab", path);
    }
    size_t at = 0;
    *max_id = -1;
    cJSON_ArrayForEach(e, vocab) {
        size_t len = strlen(e->string);
        long id = json_index(e, BATON_TOKENIZER_VOCAB_MAX - 1);
        if (id < 0) {
            return baton_fail(err, BATON_ERR_FORMAT,
                              "%s: model.vocab token \"%.40s\" has no id in [0, %d)", path,
                              e->string, BATON_TOKENIZER_VOCAB_MAX);
        }
        uint32_t *slot = vocab_slot(b, e->string, len);
        if (*slot != 0) {
            return baton_fail(err, BATON_ERR_FORMAT, "%s: model.vocab lists \"%.40s\" twice", path,
                              e->string);
        }
        uint32_t k = b->n_str++;
        memcpy(b->str_pool + at, e->string, len);
        b->str_off[k] = (uint32_t)at;
        b->str_len[k] = (uint32_t)len;
        b->str_id[k] = (int32_t)id;
        *slot = k + 1;
        at += len;
        if (id > *max_id) *max_id = (int32_t)id;
    }
    return BATON_OK;
}

/* Splits merge number i ("left right" or ["left", "right"]) into its two halves. */
static bool merge_halves(const cJSON *m, const char **l, size_t *l_n, const char **r, size_t *r_n) {
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring;
        const char *sp = strchr(s, ' ');
        if (sp == NULL || strchr(sp + 1, ' ') != NULL) return false;
        *l = s;
        *l_n = (size_t)(sp - s);
        *r = sp + 1;
        *r_n = strlen(sp + 1);
    } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2) {
        const cJSON *a = cJSON_GetArrayItem(m, 0), *c = cJSON_GetArrayItem(m, 1);
        if (!cJSON_IsString(a) || !cJSON_IsString(c)) return false;
        *l = a->valuestring;
        *l_n = strlen(a->valuestring);
        *r = c->valuestring;
        *r_n = strlen(c->valuestring);
    } else {
        return false;
    }
    return *l_n > 0 && *r_n > 0 && *l_n <= BATON_TOKENIZER_TOKEN_BYTES_MAX &&
           *r_n <= BATON_TOKENIZER_TOKEN_BYTES_MAX;
}

static baton_status read_merges(bpe *b, const char *path, const cJSON *merges, baton_error *err) {
    size_t count = (size_t)cJSON_GetArraySize(merges);
    if (count > BPE_MERGES_MAX) {
        return baton_fail(err, BATON_ERR_FORMAT, "%s: more than %d merges", path, BPE_MERGES_MAX);
    }
    b->merge_cap = pow2_at_least((uint32_t)count * 2 + 1);
    b->merge_key = malloc(b->merge_cap * sizeof *b->merge_key);
    b->merge_rank = malloc(b->merge_cap * sizeof *b->merge_rank);
    b->merge_new = malloc(b->merge_cap * sizeof *b->merge_new);
    char *joined = malloc(2 * BATON_TOKENIZER_TOKEN_BYTES_MAX);
    if (b->merge_key == NULL || b->merge_rank == NULL || b->merge_new == NULL || joined == NULL) {
        free(joined);
        return baton_fail(err, BATON_ERR_NOMEM, "%s: no memory for the merges", path);
    }
    for (uint32_t i = 0; i < b->merge_cap; i++) b->merge_new[i] = -1;
    uint32_t rank = 0;
    const cJSON *m;
    baton_status st = BATON_OK;
    cJSON_ArrayForEach(m, merges) {
        const char *l, *r;
        size_t l_n, r_n;
        if (!merge_halves(m, &l, &l_n, &r, &r_n)) {
            st = baton_fail(err, BATON_ERR_FORMAT,
                            "%s: merge %u is not \"left right\" or [\"left\", \"right\"]", path,
                            rank);
            break;
        }
        memcpy(joined, l, l_n);
        memcpy(joined + l_n, r, r_n);
        int32_t left = vocab_find(b, l, l_n), right = vocab_find(b, r, r_n);
        int32_t merged = vocab_find(b, joined, l_n + r_n);
        if (left < 0 || right < 0 || merged < 0) {
            st = baton_fail(err, BATON_ERR_FORMAT,
                            "%s: merge %u (\"%.*s\" + \"%.*s\") names a token not in model.vocab",
                            path, rank, (int)(l_n < 40 ? l_n : 40), l, (int)(r_n < 40 ? r_n : 40),
                            r);
            break;
        }
        merge_put(b, left, right, rank, merged);
        rank++;
    }
    free(joined);
    return st;
}

baton_status tok_bpe_load(baton_tokenizer *tok, const char *path, const char *data, size_t len,
                          baton_error *err) {
    baton_status st;
    added_token *added = NULL;
    size_t n_added = 0;
    uint8_t *src_kind = NULL; /* per id: 0 none, 1 vocab entry, 2 added token */
    uint32_t *src = NULL;     /* per id: the vocab entry or added token index */
    bpe *b = calloc(1, sizeof *b);
    if (b == NULL) return baton_fail(err, BATON_ERR_NOMEM, "%s: no memory", path);
    tok->impl = b;
    tok->impl_free = bpe_free;
    tok->encode = bpe_encode;
    if (!tok_trie_init(&b->added_raw) || !tok_trie_init(&b->added_norm)) {
        return baton_fail(err, BATON_ERR_NOMEM, "%s: no memory", path);
    }
    make_byte_level(b);

    const char *parse_end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(data, len, &parse_end, false);
    if (root == NULL) {
        size_t at = parse_end != NULL && parse_end >= data ? (size_t)(parse_end - data) : 0;
        return baton_fail(err, BATON_ERR_FORMAT,
                          "%s: not valid JSON (truncated or malformed near byte %zu)", path, at);
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(model)) {
        st = baton_fail(err, BATON_ERR_FORMAT, "%s: no \"model\" object", path);
        goto out;
    }
    if (cJSON_GetObjectItemCaseSensitive(model, "type") != NULL && !json_type_is(model, "BPE")) {
        st = baton_fail(err, BATON_ERR_UNSUPPORTED,
                        "%s: model type '%s' is not supported (only BPE)", path,
                        json_type_name(model));
        goto out;
    }
    if (!cJSON_IsObject(vocab)) {
        st = baton_fail(err, BATON_ERR_FORMAT, "%s: no model.vocab object", path);
        goto out;
    }
    if (!cJSON_IsArray(merges)) {
        st = baton_fail(err, BATON_ERR_FORMAT, "%s: no model.merges array", path);
        goto out;
    }
    if (!json_off(model, "dropout") || !json_off(model, "continuing_subword_prefix") ||
        !json_off(model, "end_of_word_suffix")) {
        st = baton_fail(err, BATON_ERR_UNSUPPORTED,
                        "%s: BPE dropout, continuing_subword_prefix and end_of_word_suffix are "
                        "not supported", path);
        goto out;
    }
    b->ignore_merges = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges"));
    st = check_pipeline(b, path, root, err);
    if (st != BATON_OK) goto out;

    int32_t max_id = -1;
    st = read_vocab(b, path, vocab, &max_id, err);
    if (st != BATON_OK) goto out;
    st = read_added(path, root, &added, &n_added, err);
    if (st != BATON_OK) goto out;
    for (size_t i = 0; i < n_added; i++) {
        if (added[i].id > max_id) max_id = added[i].id;
    }
    int32_t n_vocab = max_id + 1;

    /* Where each id's bytes come from; a vocab id listed twice is an error, and an added token
     * takes the place of a vocab entry with its id, as in tokenizers' id_to_token. */
    src_kind = calloc((size_t)n_vocab, 1);
    src = calloc((size_t)n_vocab, sizeof *src);
    if (src_kind == NULL || src == NULL) {
        st = baton_fail(err, BATON_ERR_NOMEM, "%s: no memory", path);
        goto out;
    }
    size_t total = 0;
    for (uint32_t k = 0; k < b->n_str; k++) {
        int32_t id = b->str_id[k];
        if (src_kind[id] != 0) {
            st = baton_fail(err, BATON_ERR_FORMAT, "%s: model.vocab gives id %d to two tokens",
                            path, (int)id);
            goto out;
        }
        src_kind[id] = 1;
        src[id] = k;
        total += b->str_len[k];
    }
    for (size_t i = 0; i < n_added; i++) {
        const added_token *a = &added[i];
        if (src_kind[a->id] == 2) {
            st = baton_fail(err, BATON_ERR_FORMAT, "%s: added_tokens gives id %d twice", path,
                            (int)a->id);
            goto out;
        }
        src_kind[a->id] = 2;
        src[a->id] = (uint32_t)i;
        total += strlen(a->content);

        /* Normalized added tokens are looked for in normalized text, so normalize them too. */
        const uint8_t *pattern = (const uint8_t *)a->content;
        size_t pattern_n = strlen(a->content);
        utf8proc_uint8_t *mapped = NULL;
        if (a->normalized && b->nfc) {
            utf8proc_ssize_t m = utf8proc_map(pattern, (utf8proc_ssize_t)pattern_n, &mapped,
                                              UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            if (m <= 0) {
                st = baton_fail(err, BATON_ERR_FORMAT, "%s: added token %d is not valid UTF-8",
                                path, (int)a->id);
                goto out;
            }
            pattern = mapped;
            pattern_n = (size_t)m;
        }
        int32_t old = -1;
        st = tok_trie_insert(a->normalized ? &b->added_norm : &b->added_raw, pattern, pattern_n,
                             a->id, &old);
        free(mapped);
        if (st == BATON_ERR_FORMAT) {
            st = baton_fail(err, st, "%s: added tokens %d and %d have the same content", path,
                            (int)old, (int)a->id);
            goto out;
        }
        if (st != BATON_OK) {
            st = baton_fail(err, st, "%s: no memory", path);
            goto out;
        }
        if (a->normalized) {
            b->n_added_norm++;
        } else {
            b->n_added_raw++;
        }
    }

    for (int x = 0; x < 256; x++) {
        uint8_t sym[4];
        int n = baton_utf8_put(b->byte_cp[x], sym);
        b->byte_id[x] = vocab_find(b, (const char *)sym, (size_t)n);
        bool in_utf8 = x != 0xC0 && x != 0xC1 && x < 0xF5;
        if (b->byte_id[x] < 0 && in_utf8) {
            st = baton_fail(err, BATON_ERR_FORMAT,
                            "%s: model.vocab lacks the byte-level symbol for byte 0x%02x "
                            "(not a byte-level BPE?)", path, x);
            goto out;
        }
    }
    st = read_merges(b, path, merges, err);
    if (st != BATON_OK) goto out;

    st = tok_alloc_tokens(tok, n_vocab, total, err);
    if (st != BATON_OK) goto out;
    uint32_t at = 0;
    for (int32_t id = 0; id < n_vocab; id++) {
        if (src_kind[id] == 1) {
            uint32_t k = src[id];
            at += (uint32_t)byte_level_decode(b, b->str_pool + b->str_off[k], b->str_len[k],
                                              tok->token_data + at);
        } else if (src_kind[id] == 2) {
            size_t n = strlen(added[src[id]].content);
            memcpy(tok->token_data + at, added[src[id]].content, n);
            at += (uint32_t)n;
        }
        tok->token_off[id + 1] = at;
    }
    tok->eot = -1;
    for (size_t i = 0; i < n_added; i++) {
        if (strcmp(added[i].content, "<|endoftext|>") == 0) tok->eot = added[i].id;
    }
    if (tok->eot < 0) tok->eot = vocab_find(b, "<|endoftext|>", strlen("<|endoftext|>"));
    st = BATON_OK;
out:
    free(src_kind);
    free(src);
    free(added);
    cJSON_Delete(root);
    return st;
}
