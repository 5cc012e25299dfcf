/* Tokenizer files, good and bad, written by the test: small valid NeoX-style tokenizer.json and
 * World vocabularies load and encode as they should, and malformed or hostile ones (truncated
 * JSON, missing vocab, bad merges, bad World lines, duplicate or out-of-range ids, oversize
 * files, random corruption) fail with the right status and a one-line message naming the file. */
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "check.h"
#include "tokenizer.h"

static char tmp_dir[4096];

static const char *tmp_path(const char *name) {
    static char path[4200];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    return path;
}

static void write_file(const char *path, const char *data, size_t n) {
    FILE *f = fopen(path, "wb");
    REQUIRE(f != NULL);
    REQUIRE(fwrite(data, 1, n, f) == n);
    REQUIRE(fclose(f) == 0);
}

/* Opens data written to a file; checks the status, and on failure that the message names the
 * file on one line. Returns the tokenizer when it opened. */
static baton_tokenizer *open_text(const char *name, const char *data, size_t n, baton_status want,
                                  int line) {
    const char *path = tmp_path(name);
    write_file(path, data, n);
    baton_tokenizer *tok = (baton_tokenizer *)1;
    baton_error err = {0};
    baton_status st = baton_tokenizer_open(path, &tok, &err);
    CHECK_MSG(st == want, "line %d (%s): status %s, want %s: %s", line, name, baton_status_str(st),
              baton_status_str(want), err.msg);
    if (st != BATON_OK) {
        CHECK(tok == NULL);
        CHECK_MSG(strstr(err.msg, path) != NULL, "line %d: message does not name the file: %s",
                  line, err.msg);
        CHECK(strchr(err.msg, '\n') == NULL);
    }
    return st == BATON_OK ? tok : NULL;
}

#define EXPECT_FAIL(name, text, status)                                                            \
    do {                                                                                           \
        baton_tokenizer_free(open_text(name, text, strlen(text), status, __LINE__));               \
    } while (0)

static void encode_is(const baton_tokenizer *tok, const char *text, const int32_t *want,
                      size_t want_n, int line) {
    int32_t *ids;
    size_t n;
    baton_error err = {0};
    CHECK_MSG(baton_tokenizer_encode(tok, text, strlen(text), &ids, &n, &err) == BATON_OK, "%s",
              err.msg);
    bool same = n == want_n;
    for (size_t i = 0; same && i < n; i++) same = ids[i] == want[i];
    CHECK_MSG(same, "line %d: encoding \"%s\" gave %zu ids", line, text, n);
    free(ids);
}

/* ---- A small byte-level BPE tokenizer.json ---- */

static void put_json_symbol(char **w, uint8_t byte) {
    /* GPT-2's bytes_to_unicode, written as a JSON \u escape. */
    static int cp[256];
    if (cp['!'] == 0) {
        int next = 256;
        for (int x = 0; x < 256; x++) {
            bool printable = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE;
            cp[x] = printable ? x : next++;
        }
    }
    *w += sprintf(*w, "\\u%04x", cp[byte]);
}

/* vocab: the 256 byte symbols (ids = byte values + 2), then "ab" 300, "abc" 301, "Ġa" 302, with
 * merges "a b", "ab c", "Ġ a"; added tokens <|endoftext|> 0 (special) and "  " 1 (normalized). */
static char *small_bpe(const char *normalizer, const char *merges_extra, const char *added_extra) {
    char *json = malloc(64 << 10);
    REQUIRE(json != NULL);
    char *w = json;
    w += sprintf(w,
                 "{\"version\": \"1.0\", \"added_tokens\": [\n"
                 " {\"id\": 0, \"content\": \"<|endoftext|>\", \"special\": true, "
                 "\"normalized\": false},\n"
                 " {\"id\": 1, \"content\": \"  \", \"special\": false, \"normalized\": true}%s],\n"
                 "\"normalizer\": %s,\n"
                 "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                 "\"trim_offsets\": true, \"use_regex\": true},\n"
                 "\"decoder\": {\"type\": \"ByteLevel\"},\n"
                 "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"vocab\": {",
                 added_extra, normalizer);
    for (int x = 0; x < 256; x++) {
        *w++ = '"';
        put_json_symbol(&w, (uint8_t)x);
        w += sprintf(w, "\": %d, ", x + 2);
    }
    w += sprintf(w,
                 "\"ab\": 300, \"abc\": 301, \"\\u0120a\": 302},\n"
                 "\"merges\": [\"a b\", [\"ab\", \"c\"], \"\\u0120 a\"%s]}}\n",
                 merges_extra);
    return json;
}

static void check_bpe_files(void) {
    char *good = small_bpe("{\"type\": \"NFC\"}", "", "");
    baton_tokenizer *tok = open_text("good.json", good, strlen(good), BATON_OK, __LINE__);
    REQUIRE(tok != NULL);
    CHECK(baton_tokenizer_n_vocab(tok) == 303);
    CHECK(baton_tokenizer_eot(tok) == 0);
    /* "abc" merges whole; " a" is Ġa; "  " is the added token; <|endoftext|> is matched raw. */
    encode_is(tok, "abc", (int32_t[]){301}, 1, __LINE__);
    encode_is(tok, "abcab a", (int32_t[]){301, 300, 302}, 3, __LINE__);
    encode_is(tok, "x<|endoftext|>  a", (int32_t[]){'x' + 2, 0, 1, 'a' + 2}, 4, __LINE__);
    encode_is(tok, "e\xCC\x81", (int32_t[]){0xC3 + 2, 0xA9 + 2}, 2, __LINE__); /* NFC: é */
    size_t len;
    const char *b = baton_tokenizer_token_bytes(tok, 302, &len);
    CHECK(b != NULL && len == 2 && memcmp(b, " a", 2) == 0);
    b = baton_tokenizer_token_bytes(tok, 299, &len); /* a gap in the ids */
    CHECK(b != NULL && len == 0);
    baton_tokenizer_free(tok);

    /* A pair listed twice keeps its later rank, as Hugging Face does; neither breaks loading. */
    char *dup_merge = small_bpe("null", ", \"a b\"", "");
    baton_tokenizer_free(
        open_text("dup-merge.json", dup_merge, strlen(dup_merge), BATON_OK, __LINE__));
    free(dup_merge);

    /* Truncated at every few hundred bytes: always a clean format error. */
    size_t good_n = strlen(good);
    for (size_t cut = 0; cut < good_n - 2; cut += 97) {
        if (cut == 0) continue;
        baton_tokenizer_free(open_text("cut.json", good, cut, BATON_ERR_FORMAT, __LINE__));
    }
    free(good);

    EXPECT_FAIL("array.json", "{\"model\": []}", BATON_ERR_FORMAT);
    EXPECT_FAIL("no-model.json", "{\"version\": \"1.0\"}", BATON_ERR_FORMAT);
    EXPECT_FAIL("no-vocab.json", "{\"model\": {\"type\": \"BPE\", \"merges\": []}}",
                BATON_ERR_FORMAT);
    EXPECT_FAIL("no-merges.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}",
                BATON_ERR_FORMAT);
    EXPECT_FAIL("merges-object.json",
                "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": {\"a\": 1}}}",
                BATON_ERR_FORMAT);
    EXPECT_FAIL("wordpiece.json",
                "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                BATON_ERR_UNSUPPORTED);
    EXPECT_FAIL(
        "nesting.json",
        "{\"a\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        BATON_ERR_FORMAT);

    struct {
        const char *name, *find, *replace;
        baton_status want;
    } edits[] = {
        {"id-string.json", "\"ab\": 300", "\"ab\": \"300\"", BATON_ERR_FORMAT},
        {"id-negative.json", "\"ab\": 300", "\"ab\": -1", BATON_ERR_FORMAT},
        {"id-fraction.json", "\"ab\": 300", "\"ab\": 300.5", BATON_ERR_FORMAT},
        {"id-huge.json", "\"ab\": 300", "\"ab\": 1e12", BATON_ERR_FORMAT},
        {"id-duplicate.json", "\"ab\": 300", "\"ab\": 2", BATON_ERR_FORMAT},
        {"token-duplicate.json", "\"abc\": 301", "\"ab\": 301", BATON_ERR_FORMAT},
        {"empty-token.json", "\"abc\": 301", "\"\": 301", BATON_ERR_FORMAT},
        {"no-byte.json", "\"\\u0041\": 67, ", "", BATON_ERR_FORMAT},
        {"merge-one-part.json", "\"a b\"", "\"ab\"", BATON_ERR_FORMAT},
        {"merge-three-parts.json", "\"a b\"", "\"a b c\"", BATON_ERR_FORMAT},
        {"merge-unknown.json", "\"a b\"", "\"a q\"", BATON_ERR_FORMAT},
        {"merge-result-unknown.json", "[\"ab\", \"c\"]", "[\"ab\", \"d\"]", BATON_ERR_FORMAT},
        {"merge-number.json", "[\"ab\", \"c\"]", "7", BATON_ERR_FORMAT},
        {"added-no-content.json", "\"content\": \"<|endoftext|>\",", "", BATON_ERR_FORMAT},
        {"added-id-range.json", "{\"id\": 0,", "{\"id\": 99999999,", BATON_ERR_FORMAT},
        {"added-empty.json", "\"content\": \"<|endoftext|>\"", "\"content\": \"\"",
         BATON_ERR_FORMAT},
        {"added-same.json", "\"content\": \"  \"",
         "\"content\": \"<|endoftext|>\", "
         "\"normalized\": false",
         BATON_ERR_FORMAT},
        {"added-lstrip.json", "\"special\": true,", "\"special\": true, \"lstrip\": true,",
         BATON_ERR_UNSUPPORTED},
        {"normalizer.json", "{\"type\": \"NFC\"}", "{\"type\": \"Lowercase\"}",
         BATON_ERR_UNSUPPORTED},
        {"pre-tokenizer.json", "\"type\": \"ByteLevel\", \"add_prefix_space\": false",
         "\"type\": \"Whitespace\", \"add_prefix_space\": false", BATON_ERR_UNSUPPORTED},
        {"prefix-space.json", "\"add_prefix_space\": false", "\"add_prefix_space\": true",
         BATON_ERR_UNSUPPORTED},
        {"dropout.json", "\"dropout\": null", "\"dropout\": 0.1", BATON_ERR_UNSUPPORTED},
    };
    char *base = small_bpe("{\"type\": \"NFC\"}", "", "");
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char *at = strstr(base, edits[i].find);
        REQUIRE(at != NULL);
        size_t find_n = strlen(edits[i].find), rep_n = strlen(edits[i].replace);
        size_t n = strlen(base) - find_n + rep_n;
        char *edited = malloc(n + 1);
        REQUIRE(edited != NULL);
        size_t head = (size_t)(at - base);
        memcpy(edited, base, head);
        memcpy(edited + head, edits[i].replace, rep_n);
        strcpy(edited + head + rep_n, at + find_n);
        baton_tokenizer_free(open_text(edits[i].name, edited, n, edits[i].want, __LINE__));
        free(edited);
    }
    free(base);
}

/* ---- A small World vocabulary ---- */

/* The 256 single bytes (ids 1..256, as in v20230424), then extra lines. */
static char *small_world(const char *extra) {
    char *text = malloc(16 << 10);
    REQUIRE(text != NULL);
    char *w = text;
    for (int x = 0; x < 256; x++) w += sprintf(w, "%d b'\\x%02x' 1\n", x + 1, x);
    strcpy(w, extra);
    return text;
}

static void check_world_files(void) {
    char *good = small_world("257 '\\u00e9' 2\n"
                             "258 b'\\xc3\\xa9x' 3\n"
                             "259 \"it's\" 4\n"
                             "260 '\\\\n' 2\n"
                             "261 '\\t\\'\\\"' 3\n"
                             "262 '日本' 6\n"
                             "263 '  ' 2\n"
                             "264 '\\101\\x42' 2\n"
                             "\n");
    baton_tokenizer *tok = open_text("good.txt", good, strlen(good), BATON_OK, __LINE__);
    REQUIRE(tok != NULL);
    CHECK(baton_tokenizer_n_vocab(tok) == 65536);
    encode_is(tok, "\xC3\xA9xy", (int32_t[]){258, 'y' + 1}, 2, __LINE__);
    encode_is(tok,
              "\xC3\xA9"
              "it's",
              (int32_t[]){257, 259}, 2, __LINE__);
    encode_is(tok, "\\n\t'\"", (int32_t[]){260, 261}, 2, __LINE__);
    encode_is(tok, "日本  AB", (int32_t[]){262, 263, 264}, 3, __LINE__);
    encode_is(tok, "", (int32_t[]){0}, 0, __LINE__);
    baton_tokenizer_free(tok);

    /* Windows line ends are fine too. */
    char *crlf = small_world("257 'ab' 2\r\n");
    baton_tokenizer_free(open_text("crlf.txt", crlf, strlen(crlf), BATON_OK, __LINE__));
    free(crlf);

    struct {
        const char *name, *extra;
    } bad[] = {
        {"no-spaces.txt", "257\n"},
        {"one-space.txt", "257 'ab'\n"},
        {"id-zero.txt", "0 'ab' 2\n"},
        {"id-range.txt", "65536 'ab' 2\n"},
        {"id-huge.txt", "99999999999999999999 'ab' 2\n"},
        {"id-text.txt", "x 'ab' 2\n"},
        {"length-wrong.txt", "257 'ab' 3\n"},
        {"length-text.txt", "257 'ab' two\n"},
        {"length-zero.txt", "257 '' 0\n"},
        {"duplicate-id.txt", "257 'ab' 2\n257 'cd' 2\n"},
        {"duplicate-bytes.txt", "257 'ab' 2\n258 b'ab' 2\n"},
        {"unterminated.txt", "257 'ab 2\n"},
        {"no-quotes.txt", "257 ab 2\n"},
        {"mixed-quotes.txt", "257 'ab\" 2\n"},
        {"inner-quote.txt", "257 'a'b' 3\n"},
        {"short-hex.txt", "257 '\\x4' 1\n"},
        {"bad-hex.txt", "257 '\\xg0' 1\n"},
        {"surrogate.txt", "257 '\\ud800' 3\n"},
        {"past-unicode.txt", "257 '\\U00110000' 4\n"},
        {"bytes-non-ascii.txt", "257 b'\xC3\xA9' 2\n"},
        {"bytes-octal.txt", "257 b'\\777' 1\n"},
        {"bad-utf8.txt", "257 '\xC3' 1\n"},
        {"trailing-backslash.txt", "257 'a\\' 2\n"},
        {"named-escape.txt", "257 '\\N{BULLET}' 3\n"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *text = small_world(bad[i].extra);
        baton_tokenizer_free(
            open_text(bad[i].name, text, strlen(text), BATON_ERR_FORMAT, __LINE__));
        free(text);
    }
    /* A token as long as the limit loads; one past it does not. */
    char *line = malloc(2 * BATON_TOKENIZER_TOKEN_BYTES_MAX + 64);
    REQUIRE(line != NULL);
    for (int over = 0; over <= 1; over++) {
        int n = BATON_TOKENIZER_TOKEN_BYTES_MAX + over;
        char *w = line + sprintf(line, "257 '");
        memset(w, 'z', (size_t)n);
        sprintf(w + n, "' %d\n", n);
        char *text = small_world(line);
        baton_tokenizer_free(open_text("long.txt", text, strlen(text),
                                       over ? BATON_ERR_FORMAT : BATON_OK, __LINE__));
        free(text);
    }
    free(line);
    /* Missing one of the single bytes. */
    char *text = small_world("");
    char *at = strstr(text, "66 b'\\x41' 1\n");
    REQUIRE(at != NULL);
    at[0] = '#';
    memmove(at, at + 13, strlen(at + 13) + 1);
    baton_tokenizer_free(
        open_text("missing-byte.txt", text, strlen(text), BATON_ERR_FORMAT, __LINE__));
    EXPECT_FAIL("empty.txt", "", BATON_ERR_FORMAT);
    EXPECT_FAIL("binary.txt", "\x01\x02garbage\xff", BATON_ERR_FORMAT);
    free(text);
    free(good);
}

/* Random corruption of the good files: whatever happens, no crash, and what opens works. */
static void check_corruption(void) {
    uint64_t s = 12345;
    char *files[2] = {small_bpe("{\"type\": \"NFC\"}", "", ""),
                      small_world("257 '\\u00e9' 2\n258 b'\\xc3\\xa9x' 3\n")};
    for (int round = 0; round < 400; round++) {
        const char *orig = files[round % 2];
        size_t n = strlen(orig);
        char *copy = malloc(n + 1);
        REQUIRE(copy != NULL);
        memcpy(copy, orig, n + 1);
        for (int k = 0; k < 4; k++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            copy[(s >> 8) % n] = (char)(s >> 40);
        }
        const char *path = tmp_path("corrupt");
        write_file(path, copy, n);
        baton_tokenizer *tok;
        baton_error err = {0};
        if (baton_tokenizer_open(path, &tok, &err) == BATON_OK) {
            int32_t *ids;
            size_t n_ids;
            const char *text = "abc  x<|endoftext|>\xC3\xA9 e\xCC\x81 \xFF\x80";
            baton_status st = baton_tokenizer_encode(tok, text, strlen(text), &ids, &n_ids, &err);
            if (st == BATON_OK) {
                char *back;
                size_t back_n;
                CHECK(baton_tokenizer_decode(tok, ids, n_ids, &back, &back_n, &err) == BATON_OK);
                free(back);
                free(ids);
            }
            baton_tokenizer_free(tok);
        } else {
            CHECK(strstr(err.msg, path) != NULL);
        }
        free(copy);
    }
    free(files[0]);
    free(files[1]);
}

int main(void) {
    const char *tmp = getenv("BATON_TMP");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/tokenizer-files-%d", tmp && *tmp ? tmp : "/tmp",
             (int)getpid());
    mkdir(tmp_dir, 0755);

    baton_tokenizer *tok = (baton_tokenizer *)1;
    baton_error err = {0};
    CHECK(baton_tokenizer_open(tmp_path("does-not-exist.json"), &tok, &err) == BATON_ERR_IO);
    CHECK(tok == NULL && strstr(err.msg, "does-not-exist.json") != NULL);

    /* A file past the size limit is refused (sparse, so it costs no disk). */
    const char *big = tmp_path("big.json");
    FILE *f = fopen(big, "wb");
    REQUIRE(f != NULL);
    fputc('{', f);
    fclose(f);
    REQUIRE(truncate(big, (off_t)BATON_TOKENIZER_FILE_MAX + 1) == 0);
    CHECK(baton_tokenizer_open(big, &tok, &err) == BATON_ERR_FORMAT);
    CHECK(strstr(err.msg, "larger than") != NULL);
    unlink(big);

    check_bpe_files();
    check_world_files();
    check_corruption();

    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
    return test_result();
}
