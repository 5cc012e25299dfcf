#include "generation.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct baton_gen {
    baton_gen_config config;
    baton_detok_stream *detok;
    size_t hold;     /* longest stop string minus one: bytes that may begin a stop string */
    char *text;      /* text not yet given out, plus up to `hold` bytes before it */
    size_t len, cap;
    size_t given;    /* text[0, given) was given out */
    char *out;       /* the last chunk given */
    size_t out_cap;
    uint32_t produced;
    bool over;
};

baton_status baton_gen_open(const baton_tokenizer *tok, const baton_gen_config *config,
                            baton_gen **out, baton_error *err) {
    assert(config->n_stops >= 0 && config->n_stops <= BATON_GEN_STOPS_MAX);
    assert(config->n_stop_ids >= 0 && config->n_stop_ids <= BATON_GEN_STOP_IDS_MAX);
    *out = NULL;
    baton_gen *g = calloc(1, sizeof *g);
    if (g == NULL) return baton_fail(err, BATON_ERR_NOMEM, "out of memory for a stream");
    g->config = *config;
    for (int i = 0; i < config->n_stops; i++) {
        size_t n = strnlen(config->stops[i], BATON_GEN_STOP_BYTES_MAX + 1);
        assert(n > 0 && n <= BATON_GEN_STOP_BYTES_MAX);
        if (n - 1 > g->hold) g->hold = n - 1;
    }
    baton_status st = baton_detok_stream_open(tok, &g->detok, err);
    if (st != BATON_OK) {
        free(g);
        return st;
    }
    *out = g;
    return BATON_OK;
}

void baton_gen_free(baton_gen *g) {
    if (g == NULL) return;
    baton_detok_stream_free(g->detok);
    free(g->text);
    free(g->out);
    free(g);
}

uint32_t baton_gen_count(const baton_gen *g) {
    return g->produced;
}

static bool grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t c = need * 2;
    char *p = realloc(*buf, c);
    if (p == NULL) return false;
    *buf = p;
    *cap = c;
    return true;
}

/* Appends s and finds how far text may be given out: up to a stop string (true returned), or
 * up to what could still begin one, never splitting a UTF-8 character (as baton run does). */
static bool text_add(baton_gen *g, const char *s, size_t n, bool final, size_t *safe) {
    memcpy(g->text + g->len, s, n);
    g->len += n;
    size_t from = g->given > g->hold ? g->given - g->hold : 0;
    size_t cut = g->len;
    for (int i = 0; i < g->config.n_stops; i++) {
        const char *hit = memmem(g->text + from, g->len - from, g->config.stops[i],
                                 strlen(g->config.stops[i]));
        if (hit != NULL && (size_t)(hit - g->text) < cut) cut = (size_t)(hit - g->text);
    }
    bool stopped = cut < g->len;
    if (stopped || final) {
        *safe = cut;
        return stopped;
    }
    size_t ok = g->len > g->hold ? g->len - g->hold : 0;
    while (ok > g->given && ok < g->len && ((unsigned char)g->text[ok] & 0xc0) == 0x80) ok--;
    *safe = ok > g->given ? ok : g->given;
    return false;
}

/* Gives text[given, safe) out, then drops what no stop string search needs any more. */
static bool give(baton_gen *g, size_t safe, baton_gen_out *out) {
    size_t n = safe - g->given;
    if (!grow(&g->out, &g->out_cap, n + 1)) return false;
    memcpy(g->out, g->text + g->given, n);
    g->out[n] = '\0';
    out->text = g->out;
    out->len = n;
    g->given = safe;
    size_t keep_from = g->given > g->hold ? g->given - g->hold : 0;
    memmove(g->text, g->text + keep_from, g->len - keep_from);
    g->len -= keep_from;
    g->given -= keep_from;
    return true;
}

baton_status baton_gen_push(baton_gen *g, int32_t token, baton_gen_out *out, baton_error *err) {
    assert(!g->over);
    memset(out, 0, sizeof *out);
    out->text = "";
    baton_finish finish = BATON_FINISH_NONE;
    const char *piece = "";
    size_t piece_len = 0;
    bool is_stop_id = false;
    for (int i = 0; i < g->config.n_stop_ids; i++) is_stop_id |= g->config.stop_ids[i] == token;

    if (g->produced >= g->config.max_tokens) {
        finish = BATON_FINISH_MAX_TOKENS;
    } else if (is_stop_id) {
        finish = BATON_FINISH_STOP_TOKEN;
    } else {
        baton_status st = baton_detok_stream_push(g->detok, token, &piece, &piece_len, err);
        if (st != BATON_OK) {
            g->over = true;
            out->finish = BATON_FINISH_ERROR;
            return st;
        }
        g->produced++;
        out->token_sent = true;
        if (g->produced == g->config.max_tokens) finish = BATON_FINISH_MAX_TOKENS;
    }
    if (!grow(&g->text, &g->cap, g->len + piece_len + 1)) goto nomem;
    size_t safe;
    bool stopped = text_add(g, piece, piece_len, false, &safe);
    if (stopped) finish = BATON_FINISH_STOP_STRING;
    if (finish != BATON_FINISH_NONE && !stopped) {
        /* The end: the detokenizer's held bytes come out (as U+FFFD), and all the rest. */
        const char *tail;
        size_t tail_len;
        baton_detok_stream_flush(g->detok, &tail, &tail_len);
        if (!grow(&g->text, &g->cap, g->len + tail_len + 1)) goto nomem;
        if (text_add(g, tail, tail_len, true, &safe)) finish = BATON_FINISH_STOP_STRING;
    }
    if (!give(g, safe, out)) goto nomem;
    out->finish = finish;
    g->over = finish != BATON_FINISH_NONE;
    return BATON_OK;
nomem:
    g->over = true;
    out->finish = BATON_FINISH_ERROR;
    return baton_fail(err, BATON_ERR_NOMEM, "out of memory for generated text");
}
