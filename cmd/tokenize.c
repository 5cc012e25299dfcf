/* baton tokenize / baton detokenize: text to token ids and back, from the command line.
 *
 *   baton tokenize --tokenizer PATH|bytes (TEXT | --stdin)   ids, one space apart, and a newline
 *   baton detokenize --tokenizer PATH|bytes ID...             the text, byte-exact, no newline */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "tokenizer.h"

static void tokenize_help(FILE *out) {
    fprintf(out,
            "usage: baton tokenize --tokenizer PATH|bytes (TEXT | --stdin)\n\n"
            "Prints the token ids of TEXT (or of all of standard input), separated by single\n"
            "spaces, and a newline.\n\n"
            "  --tokenizer SPEC  a Hugging Face tokenizer.json (GPT-NeoX-20B BPE), an RWKV\n"
            "                    World vocabulary (rwkv_vocab_v20230424.txt), or 'bytes'\n"
            "                    (token id = byte value)\n"
            "  --stdin           read the text from standard input instead of the command line\n"
            "  --help            print this and exit\n");
}

static void detokenize_help(FILE *out) {
    fprintf(out,
            "usage: baton detokenize --tokenizer PATH|bytes ID...\n\n"
            "Prints the text of the token ids, byte for byte, with no newline added.\n\n"
            "  --tokenizer SPEC  a Hugging Face tokenizer.json (GPT-NeoX-20B BPE), an RWKV\n"
            "                    World vocabulary (rwkv_vocab_v20230424.txt), or 'bytes'\n"
            "                    (token id = byte value)\n"
            "  --help            print this and exit\n");
}

/* Reads all of stdin, up to the encoder's limit. */
static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (buf == NULL) return NULL;
    for (;;) {
        if (n == cap) {
            if (cap > BATON_TOKENIZER_TEXT_MAX) break; /* encode refuses it and says why */
            char *grown = realloc(buf, cap * 2);
            if (grown == NULL) {
                free(buf);
                return NULL;
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) break;
    }
    if (ferror(stdin)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static int open_tokenizer(const char *cmd, const char *spec, baton_tokenizer **tok) {
    baton_error err = {0};
    if (baton_tokenizer_open(spec, tok, &err) != BATON_OK) {
        fprintf(stderr, "baton %s: %s\n", cmd, err.msg);
        return BATON_EXIT_FAIL;
    }
    return BATON_EXIT_OK;
}

int cmd_tokenize(int argc, char **argv) {
    const char *cmd = "tokenize";
    const char *spec = NULL, *text = NULL;
    bool from_stdin = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            tokenize_help(stdout);
            return BATON_EXIT_OK;
        } else if (strcmp(a, "--tokenizer") == 0) {
            if (i + 1 >= argc) return args_usage_error(cmd, "--tokenizer needs a value");
            spec = argv[++i];
        } else if (strcmp(a, "--stdin") == 0) {
            from_stdin = true;
        } else if (strcmp(a, "--") == 0 && i + 2 == argc && text == NULL) {
            text = argv[++i]; /* a text that starts with '-' */
        } else if (a[0] == '-' && a[1] != '\0') {
            return args_usage_error(cmd, "unknown option '%s'", a);
        } else if (text == NULL) {
            text = a;
        } else {
            return args_usage_error(cmd, "one TEXT only (quote it), got '%s' too", a);
        }
    }
    if (spec == NULL) return args_usage_error(cmd, "--tokenizer is required");
    if (from_stdin == (text != NULL)) {
        return args_usage_error(cmd, "give either TEXT or --stdin");
    }
    size_t len;
    char *owned = NULL;
    if (from_stdin) {
        owned = read_stdin(&len);
        if (owned == NULL) {
            fprintf(stderr, "baton %s: cannot read standard input\n", cmd);
            return BATON_EXIT_FAIL;
        }
        text = owned;
    } else {
        len = strlen(text);
    }
    baton_tokenizer *tok;
    int rc = open_tokenizer(cmd, spec, &tok);
    if (rc != BATON_EXIT_OK) {
        free(owned);
        return rc;
    }
    int32_t *ids;
    size_t n_ids;
    baton_error err = {0};
    if (baton_tokenizer_encode(tok, text, len, &ids, &n_ids, &err) != BATON_OK) {
        fprintf(stderr, "baton %s: %s\n", cmd, err.msg);
        rc = BATON_EXIT_FAIL;
    } else {
        for (size_t i = 0; i < n_ids; i++) printf(i ? " %d" : "%d", (int)ids[i]);
        putchar('\n');
        free(ids);
        if (fflush(stdout) != 0 || ferror(stdout)) {
            fprintf(stderr, "baton %s: writing the ids failed\n", cmd);
            rc = BATON_EXIT_FAIL;
        }
    }
    baton_tokenizer_free(tok);
    free(owned);
    return rc;
}

int cmd_detokenize(int argc, char **argv) {
    const char *cmd = "detokenize";
    const char *spec = NULL;
    /* The ids are checked against the vocabulary once it is open; first collect them. */
    const char **id_args = calloc((size_t)argc, sizeof *id_args);
    if (id_args == NULL) return BATON_EXIT_FAIL;
    int n_args = 0;
    int rc = BATON_EXIT_OK;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            detokenize_help(stdout);
            goto out_free_args;
        } else if (strcmp(a, "--tokenizer") == 0) {
            if (i + 1 >= argc) {
                rc = args_usage_error(cmd, "--tokenizer needs a value");
                goto out_free_args;
            }
            spec = argv[++i];
        } else if (a[0] == '-' && !(a[1] >= '0' && a[1] <= '9')) {
            rc = args_usage_error(cmd, "unknown option '%s'", a);
            goto out_free_args;
        } else {
            id_args[n_args++] = a;
        }
    }
    if (spec == NULL) {
        rc = args_usage_error(cmd, "--tokenizer is required");
        goto out_free_args;
    }
    baton_tokenizer *tok;
    rc = open_tokenizer(cmd, spec, &tok);
    if (rc != BATON_EXIT_OK) goto out_free_args;
    int32_t *ids = malloc(((size_t)n_args + 1) * sizeof *ids);
    if (ids == NULL) {
        rc = BATON_EXIT_FAIL;
        goto out_free_tok;
    }
    for (int i = 0; i < n_args; i++) {
        long long v;
        if (!args_int(cmd, "ID", id_args[i], 0, baton_tokenizer_n_vocab(tok) - 1, &v)) {
            rc = BATON_EXIT_USAGE;
            goto out_free_ids;
        }
        ids[i] = (int32_t)v;
    }
    char *text;
    size_t len;
    baton_error err = {0};
    if (baton_tokenizer_decode(tok, ids, (size_t)n_args, &text, &len, &err) != BATON_OK) {
        fprintf(stderr, "baton %s: %s\n", cmd, err.msg);
        rc = BATON_EXIT_FAIL;
        goto out_free_ids;
    }
    if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) {
        fprintf(stderr, "baton %s: writing the text failed\n", cmd);
        rc = BATON_EXIT_FAIL;
    }
    free(text);
out_free_ids:
    free(ids);
out_free_tok:
    baton_tokenizer_free(tok);
out_free_args:
    free(id_args);
    return rc;
}
