/* Tokenizers: text to token ids and back, for the vocabularies RWKV-4 models are trained with.
 *
 *   - NeoX BPE: a Hugging Face `tokenizer.json` with a byte-level BPE model (GPT-NeoX-20B, the
 *     Pile models). Encoding is what Hugging Face tokenizers gives: added tokens matched first
 *     (leftmost-longest), NFC, the GPT-2 pre-tokenizer regex, byte-level mapping, BPE by merge
 *     rank.
 *   - RWKV World: an `rwkv_vocab_v20230424.txt`-style file, one `<id> <python literal> <length>`
 *     per line. Encoding is greedy longest match over bytes, as RWKV's reference TRIE tokenizer
 *     does.
 *   - bytes: token id = byte value, 256 ids, for byte-vocabulary models.
 *
 * Token ids are int32_t in [0, n_vocab). Decoding is byte-exact: the bytes of a token are what it
 * stands for (for NeoX, the byte-level symbols mapped back to bytes), so concatenating the bytes of
 * encode(text) gives text back (for NeoX, NFC(text)), whatever bytes text holds.
 *
 * Threads: a baton_tokenizer is immutable once open; any number of threads may encode and read
 * token bytes at once. A baton_detok_stream belongs to one thread at a time. */
#ifndef BATON_TOKENIZER_H
#define BATON_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct baton_tokenizer baton_tokenizer;

typedef enum {
    BATON_TOKENIZER_BYTES, /* id = byte value */
    BATON_TOKENIZER_BPE,   /* Hugging Face byte-level BPE (tokenizer.json) */
    BATON_TOKENIZER_WORLD, /* RWKV World vocabulary (greedy longest match) */
} baton_tokenizer_kind;

/* Limits on what a tokenizer file may declare; a file past them is refused, not truncated. */
enum {
    BATON_TOKENIZER_FILE_MAX = 64 << 20,    /* bytes of tokenizer file read */
    BATON_TOKENIZER_VOCAB_MAX = 1 << 20,    /* n_vocab */
    BATON_TOKENIZER_TOKEN_BYTES_MAX = 4096, /* bytes of one token */
};

/* Bytes of text one encode call accepts (larger texts are BATON_ERR_ARG; split them). */
#define BATON_TOKENIZER_TEXT_MAX ((size_t)1 << 30)

/* Opens a tokenizer. spec is the literal "bytes", or the path of a file: a Hugging Face
 * tokenizer.json (recognized by its first non-blank byte, '{') or an RWKV World vocabulary text
 * file (anything else). On success *out owns everything (free with baton_tokenizer_free) and the
 * file is no longer needed. On failure *out is NULL and err (may be NULL) says which file and what
 * is wrong: BATON_ERR_IO (cannot read), BATON_ERR_FORMAT (malformed: truncated JSON, missing vocab,
 * bad merges, bad lines, duplicate or out-of-range ids), BATON_ERR_UNSUPPORTED (well-formed but a
 * tokenizer.json pipeline Baton does not implement), BATON_ERR_NOMEM. */
baton_status baton_tokenizer_open(const char *spec, baton_tokenizer **out, baton_error *err);

/* Frees tok and all it owns; NULL is a no-op. */
void baton_tokenizer_free(baton_tokenizer *tok);

baton_tokenizer_kind baton_tokenizer_get_kind(const baton_tokenizer *tok);

/* Number of token ids: every id in [0, n_vocab) decodes (some to no bytes, see token_bytes).
 * 256 for bytes, 65536 for World, 1 + the largest id for BPE (50277 for GPT-NeoX-20B). */
int32_t baton_tokenizer_n_vocab(const baton_tokenizer *tok);

/* The end-of-text id models are trained with (0 for NeoX's <|endoftext|> and for World), or -1
 * where the vocabulary has none (bytes). */
int32_t baton_tokenizer_eot(const baton_tokenizer *tok);

/* Encodes len bytes of text (need not be NUL-terminated). Text should be UTF-8, but any bytes
 * are taken: invalid sequences are encoded byte by byte and decode back unchanged, except that a
 * BPE vocabulary may lack the bytes no UTF-8 holds (C0, C1, F5..FF; GPT-NeoX-20B's does), which
 * are then BATON_ERR_ARG. On success *ids is a malloc'ed array the caller frees, never NULL, even
 * when *n_ids is 0. On failure *ids is NULL, *n_ids 0 and the status is BATON_ERR_ARG (text longer
 * than BATON_TOKENIZER_TEXT_MAX, or such a byte) or BATON_ERR_NOMEM. */
baton_status baton_tokenizer_encode(const baton_tokenizer *tok, const char *text, size_t len,
                                    int32_t **ids, size_t *n_ids, baton_error *err);

/* The bytes a token stands for, owned by tok, and their count in *len. Not NUL-terminated and
 * not necessarily whole UTF-8 characters (a token may be part of one). An id in range that has no
 * text (World's end-of-text 0, gaps in a BPE vocabulary) gives a valid pointer and *len 0. An id
 * outside [0, n_vocab) gives NULL and *len 0. */
const char *baton_tokenizer_token_bytes(const baton_tokenizer *tok, int32_t id, size_t *len);

/* Decodes ids into a malloc'ed buffer of *len bytes (NUL-terminated past *len; the caller frees):
 * the exact concatenation of the tokens' bytes, so it may hold invalid UTF-8 where the ids split a
 * character. BATON_ERR_ARG names the first id outside [0, n_vocab). */
baton_status baton_tokenizer_decode(const baton_tokenizer *tok, const int32_t *ids, size_t n_ids,
                                    char **text, size_t *len, baton_error *err);

/* Streaming decode for generation: push ids one at a time, get back only whole, valid UTF-8.
 *
 * Bytes that may still become a character are held until it completes. Bytes that cannot (a stray
 * continuation byte, a truncated sequence followed by something else, an overlong form, a
 * surrogate, a code point past U+10FFFF) are replaced by U+FFFD, one per maximal invalid
 * subpart, as the Unicode standard recommends; so every chunk out is valid UTF-8, and when the
 * ids decode to valid UTF-8 the chunks concatenate to exactly baton_tokenizer_decode's bytes. */
typedef struct baton_detok_stream baton_detok_stream;

/* Starts a stream over tok, which must outlive it. BATON_ERR_NOMEM is the only failure. */
baton_status baton_detok_stream_open(const baton_tokenizer *tok, baton_detok_stream **out,
                                     baton_error *err);

/* Frees the stream (held bytes are dropped); NULL is a no-op. */
void baton_detok_stream_free(baton_detok_stream *s);

/* Feeds one id. *text and *len get the text now complete (possibly none: *len 0), owned by the
 * stream and valid until the next call on it. BATON_ERR_ARG for an id outside [0, n_vocab), which
 * leaves the stream as it was. */
baton_status baton_detok_stream_push(baton_detok_stream *s, int32_t id, const char **text,
                                     size_t *len, baton_error *err);

/* Ends the text: *text and *len get the held bytes of an unfinished character as U+FFFD (or nothing
 * when none are held). The stream is then empty and can take a new text. */
void baton_detok_stream_flush(baton_detok_stream *s, const char **text, size_t *len);

#endif
