/* Writes the fuzzers' seed corpora: small synth models in both formats (always), and from the
 * fixtures when present, their files, data.pkl pickles and safetensors headers.
 * usage: fuzz_seeds OUT_DIR [FIXTURES_DIR] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "format_zip.h"
#include "synth.h"
#include "tensor_set.h"

static int write_file(const char *dir, const char *sub, const char *name, const void *data, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, n, f) != n) {
        fprintf(stderr, "fuzz_seeds: cannot write %s\n", path);
        if (f) fclose(f);
        return 1;
    }
    return fclose(f) != 0;
}

static void *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = len > 0 ? malloc((size_t)len) : NULL;
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *n = buf ? (size_t)len : 0;
    return buf;
}

/* One model file: into the whole-file corpora, and its pickle or header into the reader's own. */
static int add_model(const char *out, const char *path, const char *name) {
    size_t n;
    unsigned char *data = read_file(path, &n);
    if (data == NULL) return 0; /* absent fixtures are skipped */
    int bad = write_file(out, "tensor_set", name, data, n);
    if (n >= 4 && memcmp(data, "PK", 2) == 0) {
        bad |= write_file(out, "zip", name, data, n);
        baton_zip *zip = NULL;
        if (baton_zip_open(data, n, &zip, NULL) == BATON_OK) {
            for (size_t i = 0; i < baton_zip_count(zip); i++) {
                const baton_zip_entry *e = baton_zip_entry_at(zip, i);
                const char *slash = strrchr(e->name, '/');
                if (slash && strcmp(slash, "/data.pkl") == 0) {
                    bad |= write_file(out, "pickle", name, data + e->data_offset, (size_t)e->size);
                }
            }
            baton_zip_free(zip);
        }
    } else {
        bad |= write_file(out, "safetensors", name, data, n);
    }
    free(data);
    return bad;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: fuzz_seeds OUT_DIR [FIXTURES_DIR]\n");
        return 2;
    }
    const char *out = argv[1];
    mkdir(out, 0755);
    int bad = 0;
    static const baton_dtype dtypes[] = {BATON_F32, BATON_F16, BATON_BF16};
    static const char *const ext[] = {"pth", "safetensors"};
    for (int d = 0; d < 3; d++) {
        for (int e = 0; e < 2; e++) {
            char path[4096], name[64];
            snprintf(name, sizeof name, "synth-%d.%s", d, ext[e]);
            snprintf(path, sizeof path, "%s/%s", out, name);
            baton_synth_options o = {.n_layer = 1, .n_embd = 4, .n_vocab = 5, .n_ffn = 4,
                                     .dtype = dtypes[d], .seed = (uint64_t)d, .hf_names = d == 2};
            baton_error err;
            if (baton_synth_write(&o, path, &err) != BATON_OK) {
                fprintf(stderr, "fuzz_seeds: %s\n", err.msg);
                return 1;
            }
            bad |= add_model(out, path, name);
            remove(path);
        }
    }
    if (argc == 3) {
        static const char *const files[] = {"tiny-rwkv4-660K/model.fp32.pth", "tiny-rwkv4-660K/model.bf16.pth",
                                            "tiny-rwkv4-660K/model.fp16.safetensors",
                                            "synth-rwkv4-L4-D96-V300/model.bf16.pth"};
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            char path[4096], name[128];
            snprintf(path, sizeof path, "%s/%s", argv[2], files[i]);
            snprintf(name, sizeof name, "fixture-%zu", i);
            bad |= add_model(out, path, name);
        }
    }
    return bad;
}
