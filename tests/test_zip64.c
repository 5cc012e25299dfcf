/* A .pth past 4 GiB (ZIP64 sizes and offsets), written sparse by synth with zero matrices, loads:
 * the embedding alone is 4.2 GiB and the storages after it start beyond 4 GiB. Skips where the
 * filesystem cannot hold it. */
#include <fcntl.h>
#include <sys/statvfs.h>

#include "check.h"
#include "cli.h"
#include "model.h"
#include "synth.h"
#include "tensor_set.h"

enum { C = 2048, V = 1100000 }; /* V x C bf16 = 4.5 GB, past 2^32 */

/* Holes cost nothing where the filesystem makes them; elsewhere the whole size must fit. */
static void skip_without_space(const char *dir, uint64_t file_bytes) {
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0) test_skip("cannot statvfs the scratch folder");
    uint64_t free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    char probe[512];
    snprintf(probe, sizeof probe, "%s/%d-probe", dir, (int)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    bool sparse = false;
    if (fd >= 0) {
        struct stat st;
        sparse = ftruncate(fd, (off_t)1 << 33) == 0 && fstat(fd, &st) == 0 && st.st_blocks < 1024;
        close(fd);
        unlink(probe);
    }
    if (free_bytes < ((uint64_t)64 << 20) || (!sparse && free_bytes < file_bytes + ((uint64_t)1 << 30))) {
        printf("free %llu bytes, sparse files %s\n", (unsigned long long)free_bytes, sparse ? "yes" : "no");
        test_skip("the scratch filesystem lacks space for a 9 GB (sparse) file");
    }
}

int main(void) {
    char path[512];
    cli_tmp(path, sizeof path, "big.pth");
    const char *dir = getenv("BATON_TMP") ? getenv("BATON_TMP") : "/tmp";
    skip_without_space(dir, (uint64_t)2 * V * C * 2);

    baton_synth_options o = {.n_layer = 1, .n_embd = C, .n_vocab = V, .dtype = BATON_BF16,
                             .seed = 5, .zero_matrices = true};
    baton_error err = {0};
    baton_status st = baton_synth_write(&o, path, &err);
    CHECK_MSG(st == BATON_OK, "%s", err.msg);
    if (st != BATON_OK) return test_result();

    baton_tensor_set *set = NULL;
    st = baton_tensor_set_open(path, &set, &err);
    CHECK_MSG(st == BATON_OK, "%s", err.msg);
    if (set != NULL) {
        CHECK(set->size > ((uint64_t)2 * V * C * 2));
        const baton_tensor *emb = baton_tensor_set_find(set, "emb.weight");
        const baton_tensor *head = baton_tensor_set_find(set, "head.weight");
        const baton_tensor *ln = baton_tensor_set_find(set, "ln_out.bias");
        REQUIRE(emb && head && ln);
        CHECK(emb->n_elements * 2 > 0xffffffffull);                 /* a ZIP64 size */
        CHECK(head->file_offset > 0xffffffffull && head->file_offset % 64 == 0); /* a ZIP64 offset */
        CHECK(ln->file_offset > 0xffffffffull);
        /* The vector after the holes holds what was drawn (ln biases lie in [-0.2, 0.2], not all 0). */
        float sum = 0;
        for (int i = 0; i < C; i++) sum += fabsf(baton_load_f32(ln->data, ln->dtype, (size_t)i));
        CHECK(sum > 0 && sum < 0.21f * C);
        baton_tensor_set_free(set);
    }

    baton_model *m = NULL;
    st = baton_model_load(path, NULL, &m, &err);
    CHECK_MSG(st == BATON_OK, "%s", err.msg);
    if (m != NULL) {
        CHECK(m->n_layer == 1 && m->n_embd == C && m->n_vocab == V && m->n_ffn == 4 * C);
        CHECK(m->emb.rows == V && m->head.rows == V);
        const uint16_t *last_row = (const uint16_t *)m->head.data + (size_t)(V - 1) * C;
        CHECK(last_row[0] == 0 && last_row[C - 1] == 0); /* a hole reads as zeros */
        CHECK(baton_model_weight_bytes(m) == (uint64_t)(2 * V + 4 * C + 2 * 4 * C) * C * 2 +
                                                 (uint64_t)C * C * 2);
        baton_model_free(m);
    }
    unlink(path);
    return test_result();
}
