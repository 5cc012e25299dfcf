/* libFuzzer target for the tokenizers. The first input byte picks what the rest is:
 *   0  an RWKV World vocabulary file      1  a tokenizer.json
 *   2  text for the fixture tokenizers     3  bytes for the streaming UTF-8 decoder
 * Files must load or fail cleanly (and what loads must encode and decode); texts must round-trip
 * (World byte-exact, NeoX byte-exact for ASCII) and stream-decode into valid UTF-8 only.
 * The fixtures come from $BATON_FIXTURES (else ../shared/fixtures beside the source tree); without
 * them mode 2 uses the byte tokenizer alone. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tokenizer.h"
#include "utf8_stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Encodes text, decodes it whole and streamed; aborts on a broken promise. */
static void round_trip(const baton_tokenizer *tok, const uint8_t *text, size_t n, bool exact) {
    int32_t *ids;
    size_t n_ids;
    if (baton_tokenizer_encode(tok, (const char *)text, n, &ids, &n_ids, NULL) != BATON_OK) return;
    char *back;
    size_t back_n;
    if (baton_tokenizer_decode(tok, ids, n_ids, &back, &back_n, NULL) != BATON_OK) abort();
    if (exact && (back_n != n || memcmp(back, text, n) != 0)) abort();
    baton_detok_stream *s;
    if (baton_detok_stream_open(tok, &s, NULL) != BATON_OK) abort();
    size_t at = 0;
    bool same = true;
    for (size_t i = 0; i <= n_ids; i++) {
        const char *chunk;
        size_t chunk_n;
        if (i < n_ids) {
            if (baton_detok_stream_push(s, ids[i], &chunk, &chunk_n, NULL) != BATON_OK) abort();
        } else {
            baton_detok_stream_flush(s, &chunk, &chunk_n);
        }
        if (!baton_utf8_valid(chunk, chunk_n)) abort();
        same = same && at + chunk_n <= back_n && memcmp(back + at, chunk, chunk_n) == 0;
        at += chunk_n;
    }
    if (baton_utf8_valid(back, back_n) && !(same && at == back_n)) abort();
    baton_detok_stream_free(s);
    free(back);
    free(ids);
}

static void load_file(const uint8_t *data, size_t size) {
    /* An in-memory file, so that the fuzzer writes nothing to disk. */
    int fd = memfd_create("fuzz-tokenizer", 0);
    if (fd < 0) return;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        baton_tokenizer *tok;
        baton_error err;
        if (baton_tokenizer_open(path, &tok, &err) == BATON_OK) {
            static const char text[] = "abc  x<|endoftext|>\xC3\xA9 e\xCC\x81 \xFF\x80 \xE6\x97";
            round_trip(tok, (const uint8_t *)text, sizeof text - 1,
                       baton_tokenizer_get_kind(tok) == BATON_TOKENIZER_WORLD);
            baton_tokenizer_free(tok);
        } else if (strchr(err.msg, '\n') != NULL || strstr(err.msg, path) == NULL) {
            abort();
        }
    }
    close(fd);
}

static baton_tokenizer *fixture(const char *name) {
    const char *dir = getenv("BATON_FIXTURES");
    char path[4096];
#ifdef BATON_SOURCE_DIR
    if (dir == NULL) dir = BATON_SOURCE_DIR "/../shared/fixtures";
#endif
    if (dir == NULL) return NULL;
    snprintf(path, sizeof path, "%s/tokenizer/%s", dir, name);
    baton_tokenizer *tok;
    return baton_tokenizer_open(path, &tok, NULL) == BATON_OK ? tok : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static baton_tokenizer *neox, *world, *bytes;
    static bool loaded;
    if (!loaded) {
        loaded = true;
        neox = fixture("20B_tokenizer.json");
        world = fixture("rwkv_vocab_v20230424.txt");
        if (baton_tokenizer_open("bytes", &bytes, NULL) != BATON_OK) abort();
    }
    if (size == 0) return 0;
    uint8_t mode = data[0] % 4;
    data++;
    size--;
    if (mode == 0 || mode == 1) {
        if (mode == 1 && (size == 0 || data[0] != '{')) return 0; /* keep it a JSON file */
        load_file(data, size);
    } else if (mode == 2) {
        bool ascii = true;
        for (size_t i = 0; i < size; i++) ascii = ascii && data[i] < 0x80;
        round_trip(bytes, data, size, true);
        if (world != NULL) round_trip(world, data, size, true);
        if (neox != NULL) round_trip(neox, data, size, ascii);
    } else {
        /* Feed the bytes in pieces whose sizes the bytes themselves choose. */
        baton_utf8_stream s = {0};
        uint8_t out[BATON_UTF8_STREAM_OUT_MAX(16)];
        for (size_t i = 0; i < size;) {
            size_t piece = 1 + data[i] % 16;
            if (piece > size - i) piece = size - i;
            size_t n = baton_utf8_stream_feed(&s, data + i, piece, out);
            if (!baton_utf8_valid((const char *)out, n)) abort();
            i += piece;
        }
        size_t n = baton_utf8_stream_flush(&s, out);
        if (!baton_utf8_valid((const char *)out, n)) abort();
    }
    return 0;
}
