/* One stream's generation after sampling: stop token ids, stop strings, max_tokens and streaming
 * UTF-8, with the same rules as `baton run`, so a server stream and `baton run` give the same
 * text for the same tokens.
 *
 * Text is given out as soon as no stop string can still begin in it; a stop string and what
 * follows are never given out. Not thread-safe: one stream, one thread at a time. */
#ifndef BATON_GENERATION_H
#define BATON_GENERATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tokenizer.h"

enum { BATON_GEN_STOPS_MAX = 8, BATON_GEN_STOP_BYTES_MAX = 256, BATON_GEN_STOP_IDS_MAX = 32 };

typedef enum {
    BATON_FINISH_NONE = 0,    /* still generating */
    BATON_FINISH_STOP_TOKEN,  /* a stop id came */
    BATON_FINISH_STOP_STRING, /* a stop string appeared in the text */
    BATON_FINISH_MAX_TOKENS,  /* max_tokens tokens were generated */
    BATON_FINISH_CANCELLED,   /* the client went away */
    BATON_FINISH_DEADLINE,    /* the stream's deadline passed */
    BATON_FINISH_SHUTDOWN,    /* the server is shutting down */
    BATON_FINISH_ERROR,       /* the engine failed */
    BATON_FINISH_UNAVAILABLE, /* a pipeline node failed or did not answer in time */
} baton_finish;

typedef struct {
    char stops[BATON_GEN_STOPS_MAX][BATON_GEN_STOP_BYTES_MAX + 1]; /* non-empty, NUL-ended */
    int n_stops;
    int32_t stop_ids[BATON_GEN_STOP_IDS_MAX];
    int n_stop_ids;
    uint32_t max_tokens;
} baton_gen_config;

typedef struct baton_gen baton_gen;

/* What one token gave. */
typedef struct {
    const char *text;    /* text now safe to send (owned by gen, valid until the next call) */
    size_t len;
    bool token_sent;     /* the token counts as generated (false for a stop id) */
    baton_finish finish; /* NONE: go on */
} baton_gen_out;

/* Starts a stream over tok (which must outlive it); config is copied. Its limits are the
 * caller's to check: they are asserted. */
baton_status baton_gen_open(const baton_tokenizer *tok, const baton_gen_config *config,
                            baton_gen **out, baton_error *err);
void baton_gen_free(baton_gen *gen);

/* Takes the next sampled token. Once out->finish is not NONE, the stream is over and out->text
 * holds the last of its text. An error (a token the tokenizer cannot decode, no memory) leaves
 * out->finish as ERROR. */
baton_status baton_gen_push(baton_gen *gen, int32_t token, baton_gen_out *out, baton_error *err);

/* Tokens generated so far (those sent). */
uint32_t baton_gen_count(const baton_gen *gen);

#endif
