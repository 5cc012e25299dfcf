/* Tokenizers against the fixture cases: every case of neox-cases.jsonl and world-cases.jsonl
 * encodes to its ids and decodes back byte-exact, in one piece and token by token through the
 * streaming decoder; plus round trips of random text and the byte vocabulary. */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <utf8proc.h>

#include "check.h"
#include "tokenizer.h"
#include "utf8_stream.h"

/* Decodes ids through a stream, checking every chunk is valid UTF-8; returns the concatenation
 * (malloc'ed, *len bytes). */
static char *stream_decode(const baton_tokenizer *tok, const int32_t *ids, size_t n, size_t *len) {
    baton_detok_stream *s;
    baton_error err = {0};
    REQUIRE(baton_detok_stream_open(tok, &s, &err) == BATON_OK);
    size_t cap = 64, w = 0;
    char *all = malloc(cap);
    REQUIRE(all != NULL);
    for (size_t i = 0; i <= n; i++) {
        const char *chunk;
        size_t chunk_n;
        if (i < n) {
            CHECK(baton_detok_stream_push(s, ids[i], &chunk, &chunk_n, &err) == BATON_OK);
        } else {
            baton_detok_stream_flush(s, &chunk, &chunk_n);
        }
        CHECK_MSG(baton_utf8_valid(chunk, chunk_n), "chunk after id %zu is not whole UTF-8", i);
        while (w + chunk_n + 1 > cap) cap *= 2;
        all = realloc(all, cap);
        REQUIRE(all != NULL);
        memcpy(all + w, chunk, chunk_n);
        w += chunk_n;
    }
    baton_detok_stream_free(s);
    *len = w;
    return all;
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s:", label);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", (int)ids[i]);
    fputc('\n', stderr);
}

/* Runs every case of a jsonl file; returns how many ran. Decoding gives the text back exactly,
 * or for BPE its NFC form (the one case with a combining accent is not NFC; its ids are those of
 * the composed character, as Hugging Face gives them). */
static int run_cases(const baton_tokenizer *tok, const char *cases_path) {
    size_t size;
    char *data = test_read_file(cases_path, &size);
    REQUIRE(data != NULL);
    int n_cases = 0;
    for (char *line = data; line < data + size;) {
        char *nl = memchr(line, '\n', (size_t)(data + size - line));
        size_t line_n = nl ? (size_t)(nl - line) : (size_t)(data + size - line);
        char *next = line + line_n + 1;
        if (line_n == 0) {
            line = next;
            continue;
        }
        cJSON *c = cJSON_ParseWithLength(line, line_n);
        REQUIRE(c != NULL);
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(c, "text");
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(c, "ids");
        REQUIRE(cJSON_IsString(text) && cJSON_IsArray(want));
        const char *t = text->valuestring;
        size_t t_n = strlen(t);
        size_t want_n = (size_t)cJSON_GetArraySize(want);

        int32_t *ids;
        size_t n_ids;
        baton_error err = {0};
        CHECK(baton_tokenizer_encode(tok, t, t_n, &ids, &n_ids, &err) == BATON_OK);
        bool same = n_ids == want_n;
        for (size_t i = 0; same && i < n_ids; i++) {
            same = ids[i] == cJSON_GetArrayItem(want, (int)i)->valueint;
        }
        CHECK_MSG(same, "%s: encoding \"%s\"", cases_path, t);
        if (!same) {
            print_ids("got ", ids, n_ids);
            fprintf(stderr, "  want:");
            for (size_t i = 0; i < want_n; i++) {
                fprintf(stderr, " %d", cJSON_GetArrayItem(want, (int)i)->valueint);
            }
            fputc('\n', stderr);
        }

        /* Decode the fixture's ids (not ours), whole and streamed. */
        int32_t *want_ids = malloc((want_n ? want_n : 1) * sizeof *want_ids);
        REQUIRE(want_ids != NULL);
        for (size_t i = 0; i < want_n; i++)
            want_ids[i] = cJSON_GetArrayItem(want, (int)i)->valueint;
        char *nfc = NULL;
        if (baton_tokenizer_get_kind(tok) == BATON_TOKENIZER_BPE) {
            nfc = (char *)utf8proc_NFC((const utf8proc_uint8_t *)t);
            REQUIRE(nfc != NULL);
            if (strcmp(nfc, t) != 0) printf("  (NFC changes \"%s\")\n", t);
            t = nfc;
            t_n = strlen(nfc);
        }
        char *back;
        size_t back_n;
        CHECK(baton_tokenizer_decode(tok, want_ids, want_n, &back, &back_n, &err) == BATON_OK);
        CHECK_MSG(back_n == t_n && memcmp(back, t, t_n) == 0, "%s: decoding \"%s\" gave \"%s\"",
                  cases_path, t, back);
        size_t streamed_n;
        char *streamed = stream_decode(tok, want_ids, want_n, &streamed_n);
        CHECK_MSG(streamed_n == t_n && memcmp(streamed, t, t_n) == 0,
                  "%s: stream-decoding \"%s\" gave \"%.*s\"", cases_path, t, (int)streamed_n,
                  streamed);
        free(streamed);
        free(back);
        free(nfc);
        free(want_ids);
        free(ids);
        cJSON_Delete(c);
        n_cases++;
        line = next;
    }
    free(data);
    return n_cases;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint32_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* Random text from a mix of ASCII words, spaces, punctuation and multi-byte characters. */
static size_t random_text(char *out, size_t cap) {
    static const char *const parts[] = {
        " ",           "  ",    "     ",     "\n",       "\t",
        "the",         " cat",  "'s",        "'ll",      "don't",
        "123",         " 4.5",  "!",         "?!",       "<|endoftext|>",
        "<|padding|>", "é",     "e\xCC\x81", "日本",     "語",
        "😀",           "🇫🇷",    "Ω",         "\xC2\xA0", "\xE3\x80\x80",
        "x",           "Hello", " world",    "-",        "__init__",
        "ü",           "\r\n"};
    size_t w = 0;
    while (w + 16 < cap) {
        const char *p = parts[rng() % (sizeof parts / sizeof parts[0])];
        size_t n = strlen(p);
        memcpy(out + w, p, n);
        w += n;
        if (rng() % 8 == 0) break;
    }
    return w;
}

/* decode(encode(text)) == text for texts with nothing NFC changes, and for any bytes at all. */
static void check_round_trips(const baton_tokenizer *tok, bool any_bytes) {
    char text[512];
    for (int round = 0; round < 2000; round++) {
        size_t n;
        if (any_bytes && round % 2 == 1) {
            n = rng() % 64;
            for (size_t i = 0; i < n; i++) text[i] = (char)rng();
        } else {
            n = random_text(text, sizeof text);
        }
        int32_t *ids;
        size_t n_ids;
        char *back;
        size_t back_n;
        baton_status st = baton_tokenizer_encode(tok, text, n, &ids, &n_ids, NULL);
        if (st == BATON_ERR_ARG && baton_tokenizer_get_kind(tok) == BATON_TOKENIZER_BPE) {
            /* NeoX has no tokens for C0, C1 and F5..FF, bytes no UTF-8 holds. */
            bool has_unencodable = false;
            for (size_t i = 0; i < n; i++) {
                uint8_t x = (uint8_t)text[i];
                has_unencodable = has_unencodable || x == 0xC0 || x == 0xC1 || x >= 0xF5;
            }
            CHECK(has_unencodable && ids == NULL);
            continue;
        }
        REQUIRE(st == BATON_OK);
        REQUIRE(baton_tokenizer_decode(tok, ids, n_ids, &back, &back_n, NULL) == BATON_OK);
        /* "e" + combining acute is the one part NFC changes. */
        bool nfc_changes = memmem(text, n, "e\xCC\x81", 3) != NULL &&
                           baton_tokenizer_get_kind(tok) == BATON_TOKENIZER_BPE;
        if (!nfc_changes) {
            CHECK_MSG(back_n == n && memcmp(back, text, n) == 0, "round trip of \"%.*s\"", (int)n,
                      text);
        }
        size_t streamed_n;
        char *streamed = stream_decode(tok, ids, n_ids, &streamed_n);
        if (baton_utf8_valid(back, back_n)) {
            CHECK(streamed_n == back_n && memcmp(streamed, back, back_n) == 0);
        }
        free(streamed);
        free(back);
        free(ids);
    }
}

/* Encodes a long prompt (about 10,000 tokens) and reports the time. */
static void check_speed(const baton_tokenizer *tok, const char *name) {
    const char *para = "The quick brown fox jumps over the lazy dog; RWKV is an RNN with "
                       "transformer-level LLM performance, 日本語のテキスト, café naïve 😀 "
                       "def f(x):\n    return x * 2  # comment\n";
    size_t para_n = strlen(para), reps = 0, n = 0;
    char *text = malloc(para_n * 400 + 1);
    REQUIRE(text != NULL);
    /* Vary the text so that it is not one paragraph over and over. */
    while (reps < 400) {
        memcpy(text + n, para, para_n);
        n += para_n;
        text[n - 1] = (char)('a' + reps % 26);
        reps++;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int32_t *ids;
    size_t n_ids;
    REQUIRE(baton_tokenizer_encode(tok, text, n, &ids, &n_ids, NULL) == BATON_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("%s: encoded %zu bytes into %zu tokens in %.1f ms\n", name, n, n_ids, ms);
    CHECK(n_ids > 5000);
    CHECK(ms < 5000); /* well under a second in a release build; this bound allows sanitizers */
    free(ids);
    free(text);
}

static void check_bytes(void) {
    baton_tokenizer *tok;
    baton_error err = {0};
    REQUIRE(baton_tokenizer_open("bytes", &tok, &err) == BATON_OK);
    CHECK(baton_tokenizer_get_kind(tok) == BATON_TOKENIZER_BYTES);
    CHECK(baton_tokenizer_n_vocab(tok) == 256);
    CHECK(baton_tokenizer_eot(tok) == -1);
    int32_t *ids;
    size_t n_ids;
    CHECK(baton_tokenizer_encode(tok, "\"in\xff", 4, &ids, &n_ids, &err) == BATON_OK);
    CHECK(n_ids == 4 && ids[0] == 34 && ids[1] == 105 && ids[2] == 110 && ids[3] == 255);
    free(ids);
    CHECK(baton_tokenizer_encode(tok, "", 0, &ids, &n_ids, &err) == BATON_OK);
    CHECK(ids != NULL && n_ids == 0);
    free(ids);
    size_t len;
    CHECK(baton_tokenizer_token_bytes(tok, 256, &len) == NULL && len == 0);
    CHECK(baton_tokenizer_token_bytes(tok, -1, &len) == NULL);
    const char *b = baton_tokenizer_token_bytes(tok, 0xC3, &len);
    CHECK(b != NULL && len == 1 && (uint8_t)b[0] == 0xC3);

    /* The stream holds a split character until it completes and replaces what never can. */
    baton_detok_stream *s;
    REQUIRE(baton_detok_stream_open(tok, &s, &err) == BATON_OK);
    const char *out;
    size_t out_n;
    CHECK(baton_detok_stream_push(s, 0xF0, &out, &out_n, &err) == BATON_OK && out_n == 0);
    CHECK(baton_detok_stream_push(s, 0x9F, &out, &out_n, &err) == BATON_OK && out_n == 0);
    CHECK(baton_detok_stream_push(s, 0x98, &out, &out_n, &err) == BATON_OK && out_n == 0);
    CHECK(baton_detok_stream_push(s, 0x80, &out, &out_n, &err) == BATON_OK && out_n == 4 &&
          memcmp(out, "\xF0\x9F\x98\x80", 4) == 0);
    CHECK(baton_detok_stream_push(s, 'a', &out, &out_n, &err) == BATON_OK && out_n == 1 &&
          out[0] == 'a');
    /* A cut-off sequence followed by ASCII: one U+FFFD, then the ASCII. */
    CHECK(baton_detok_stream_push(s, 0xE2, &out, &out_n, &err) == BATON_OK && out_n == 0);
    CHECK(baton_detok_stream_push(s, 0x82, &out, &out_n, &err) == BATON_OK && out_n == 0);
    CHECK(baton_detok_stream_push(s, 'b', &out, &out_n, &err) == BATON_OK && out_n == 4 &&
          memcmp(out,
                 "\xEF\xBF\xBD"
                 "b",
                 4) == 0);
    /* A stray continuation byte and an overlong lead are each one U+FFFD. */
    CHECK(baton_detok_stream_push(s, 0x80, &out, &out_n, &err) == BATON_OK && out_n == 3 &&
          memcmp(out, "\xEF\xBF\xBD", 3) == 0);
    CHECK(baton_detok_stream_push(s, 0xC0, &out, &out_n, &err) == BATON_OK && out_n == 3);
    /* A surrogate's lead (ED A0) is invalid at its second byte: U+FFFD for ED, then for A0. */
    CHECK(baton_detok_stream_push(s, 0xED, &out, &out_n, &err) == BATON_OK && out_n == 0);
    CHECK(baton_detok_stream_push(s, 0xA0, &out, &out_n, &err) == BATON_OK && out_n == 6 &&
          memcmp(out, "\xEF\xBF\xBD\xEF\xBF\xBD", 6) == 0);
    /* An out-of-range id is refused and leaves the held bytes alone. */
    CHECK(baton_detok_stream_push(s, 0xC3, &out, &out_n, &err) == BATON_OK && out_n == 0);
    CHECK(baton_detok_stream_push(s, 300, &out, &out_n, &err) == BATON_ERR_ARG && out_n == 0);
    CHECK(baton_detok_stream_push(s, 0xA9, &out, &out_n, &err) == BATON_OK && out_n == 2 &&
          memcmp(out, "\xC3\xA9", 2) == 0);
    /* Flushing an unfinished character gives U+FFFD; flushing nothing gives nothing. */
    CHECK(baton_detok_stream_push(s, 0xE6, &out, &out_n, &err) == BATON_OK && out_n == 0);
    baton_detok_stream_flush(s, &out, &out_n);
    CHECK(out_n == 3 && memcmp(out, "\xEF\xBF\xBD", 3) == 0);
    baton_detok_stream_flush(s, &out, &out_n);
    CHECK(out_n == 0);
    baton_detok_stream_free(s);

    char *text;
    int32_t bad[] = {104, 105, 256};
    CHECK(baton_tokenizer_decode(tok, bad, 3, &text, &len, &err) == BATON_ERR_ARG);
    CHECK(text == NULL && strstr(err.msg, "256") != NULL);
    check_round_trips(tok, true);
    baton_tokenizer_free(tok);
}

int main(void) {
    check_bytes();
    const char *fixtures = test_fixtures();
    char path[4400], cases[4400];
    baton_error err = {0};

    baton_tokenizer *neox;
    snprintf(path, sizeof path, "%s/tokenizer/20B_tokenizer.json", fixtures);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_MSG(baton_tokenizer_open(path, &neox, &err) == BATON_OK, "%s", err.msg);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    REQUIRE(neox != NULL);
    printf("neox: loaded in %.1f ms\n",
           (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    CHECK(baton_tokenizer_get_kind(neox) == BATON_TOKENIZER_BPE);
    CHECK(baton_tokenizer_n_vocab(neox) == 50277);
    CHECK(baton_tokenizer_eot(neox) == 0);
    size_t len;
    const char *tb = baton_tokenizer_token_bytes(neox, 50276, &len);
    CHECK(tb != NULL && len == 2 && memcmp(tb, "  ", 2) == 0);
    tb = baton_tokenizer_token_bytes(neox, 209, &len);
    CHECK(tb != NULL && len == 1 && tb[0] == ' ');
    CHECK(baton_tokenizer_token_bytes(neox, 50277, &len) == NULL);
    snprintf(cases, sizeof cases, "%s/tokenizer/neox-cases.jsonl", fixtures);
    int n = run_cases(neox, cases);
    printf("neox: %d cases\n", n);
    CHECK(n >= 20);
    check_round_trips(neox, true);
    check_speed(neox, "neox");
    baton_tokenizer_free(neox);

    baton_tokenizer *world;
    snprintf(path, sizeof path, "%s/tokenizer/rwkv_vocab_v20230424.txt", fixtures);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_MSG(baton_tokenizer_open(path, &world, &err) == BATON_OK, "%s", err.msg);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    REQUIRE(world != NULL);
    printf("world: loaded in %.1f ms\n",
           (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    CHECK(baton_tokenizer_get_kind(world) == BATON_TOKENIZER_WORLD);
    CHECK(baton_tokenizer_n_vocab(world) == 65536);
    CHECK(baton_tokenizer_eot(world) == 0);
    tb = baton_tokenizer_token_bytes(world, 0, &len);
    CHECK(tb != NULL && len == 0);
    tb = baton_tokenizer_token_bytes(world, 65529, &len);
    CHECK(tb != NULL && len == 128);
    tb = baton_tokenizer_token_bytes(world, 256, &len);
    CHECK(tb != NULL && len == 1 && (uint8_t)tb[0] == 0xFF);
    snprintf(cases, sizeof cases, "%s/tokenizer/world-cases.jsonl", fixtures);
    n = run_cases(world, cases);
    printf("world: %d cases\n", n);
    CHECK(n >= 20);
    check_round_trips(world, true);
    check_speed(world, "world");
    baton_tokenizer_free(world);
    return test_result();
}
