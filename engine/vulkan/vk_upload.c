/* Uploading weights: convert to fp16 on the host, a bounded staging buffer at a time, on a
 * pool of threads, then copy to device-local buffers. */
#include "vk_upload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { STAGING_BYTES_MAX = 64 << 20, THREADS_MAX = 32 };

baton_status vk_uploader_init(vk_context *ctx, vk_uploader *up, uint64_t total_bytes,
                              baton_error *err) {
    memset(up, 0, sizeof *up);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    up->n_threads = n < 1 ? 1 : n > THREADS_MAX ? THREADS_MAX : (int)n;
    baton_status s = baton_pool_new(up->n_threads, &up->pool, err);
    if (s == BATON_OK) s = vk_buffer_create(ctx, STAGING_BYTES_MAX, true, &up->staging, err);
    if (s != BATON_OK) {
        baton_pool_free(up->pool);
        up->pool = NULL;
        return s;
    }
    baton_progress_begin(&up->progress, "uploading weights", total_bytes);
    return BATON_OK;
}

void vk_uploader_free(vk_context *ctx, vk_uploader *up) {
    if (up->staging.buffer != VK_NULL_HANDLE) baton_progress_end(&up->progress);
    vk_buffer_destroy(ctx, &up->staging);
    baton_pool_free(up->pool);
    up->pool = NULL;
    free(up->rows);
    up->rows = NULL;
}

void vk_matrix_free(vk_context *ctx, vk_matrix *m) {
    if (m->chunks != NULL) {
        for (int i = m->n_chunks - 1; i >= 0; i--) vk_buffer_destroy(ctx, &m->chunks[i]);
    }
    free(m->chunks);
    memset(m, 0, sizeof *m);
}

typedef struct {
    const baton_matrix *const *ms; /* the stacked parts */
    const int64_t *part_blk;       /* their first row blocks */
    int n_parts;
    int64_t cols;
    uint16_t *dst;         /* the staging piece */
    uint16_t *rows;        /* [pool part][cols]: a row converted, before it is interleaved */
    int64_t blk_first;     /* first stacked row block of the piece */
    int64_t n_blocks;      /* the piece's blocks, split over the pool's parts */
    uint64_t overflow[THREADS_MAX]; /* per part: values fp16 cannot hold, the largest of them */
    float overflow_max[THREADS_MAX];
} convert_job;

/* Converts part `part` of `parts` of the piece's blocks: each row to fp16 whole, then its
 * 8-column chunks to their places in the interleaved layout; rows past a part become zeros. */
static void convert_blocks(void *arg, int part, int parts) {
    convert_job *job = arg;
    int64_t cols = job->cols, nc = cols / 8;
    uint16_t *conv = job->rows + (size_t)part * (size_t)cols;
    for (int64_t b = job->n_blocks * part / parts; b < job->n_blocks * (part + 1) / parts; b++) {
        uint16_t *blk = job->dst + (size_t)b * VK_ROW_BLOCK * (size_t)cols;
        int64_t gb = job->blk_first + b;
        int p = job->n_parts - 1;
        while (p > 0 && gb < job->part_blk[p]) p--;
        const baton_matrix *m = job->ms[p];
        size_t row_bytes = (size_t)cols * baton_dtype_size(m->dtype);
        for (int lane = 0; lane < VK_ROW_BLOCK; lane++) {
            int64_t row = (gb - job->part_blk[p]) * VK_ROW_BLOCK + lane;
            if (row < m->rows) {
                const char *src = (const char *)m->data + (size_t)row * row_bytes;
                job->overflow[part] += baton_convert_to_f16(conv, src, m->dtype, (size_t)cols, true,
                                                            &job->overflow_max[part]);
            }
            for (int64_t c = 0; c < nc; c++) {
                uint16_t *d = blk + ((size_t)c * VK_ROW_BLOCK + (size_t)lane) * 8;
                if (row < m->rows)
                    memcpy(d, conv + c * 8, 16);
                else
                    memset(d, 0, 16);
            }
        }
    }
}

baton_status vk_matrix_upload(vk_context *ctx, vk_uploader *up, const baton_matrix *m,
                              const char *name, vk_matrix *out, baton_error *err) {
    return vk_matrix_upload_stack(ctx, up, &m, 1, name, out, err);
}

baton_status vk_matrix_upload_stack(vk_context *ctx, vk_uploader *up, const baton_matrix *const *ms,
                                    int n, const char *name, vk_matrix *out, baton_error *err) {
    memset(out, 0, sizeof *out);
    if (n < 1 || n > VK_MATRIX_PARTS)
        return baton_fail(err, BATON_ERR_ARG, "%s: %d matrices to stack (1 to %d)", name, n,
                          VK_MATRIX_PARTS);
    int64_t n_blocks = 0;
    for (int p = 0; p < n; p++) {
        const baton_matrix *m = ms[p];
        if (m->data == NULL || m->rows < 1 || m->cols < 8 || m->cols % 8 != 0 || m->cols != ms[0]->cols)
            return baton_fail(err, BATON_ERR_SHAPE, "%s: shape (%lld, %lld) is not (rows, 8k) with "
                              "the columns of the matrices stacked with it", name,
                              (long long)m->rows, (long long)m->cols);
        n_blocks = (n_blocks + VK_TILE_BLOCKS - 1) / VK_TILE_BLOCKS * VK_TILE_BLOCKS;
        out->part_blk[p] = n_blocks;
        out->part_rows[p] = m->rows;
        n_blocks += (m->rows + VK_ROW_BLOCK - 1) / VK_ROW_BLOCK;
    }
    out->n_parts = n;
    const baton_matrix *m = ms[0];
    uint64_t block_bytes = (uint64_t)VK_ROW_BLOCK * (uint64_t)m->cols * 2;
    uint64_t limit = ctx->info.max_storage_range < ctx->info.max_alloc ? ctx->info.max_storage_range
                                                                       : ctx->info.max_alloc;
    /* BATON_VK_CHUNK_BYTES lowers the chunk size, so tests split small matrices as lavapipe's
     * 128 MiB binding limit splits a 14B model's head. */
    const char *chunk_env = getenv("BATON_VK_CHUNK_BYTES");
    if (chunk_env != NULL && strtoull(chunk_env, NULL, 10) > 0 && strtoull(chunk_env, NULL, 10) < limit)
        limit = strtoull(chunk_env, NULL, 10);
    uint64_t blocks_per_chunk = limit / block_bytes;
    if (blocks_per_chunk >= VK_TILE_BLOCKS) blocks_per_chunk -= blocks_per_chunk % VK_TILE_BLOCKS;
    uint64_t blocks_per_piece = up->staging.size / block_bytes;
    if (blocks_per_chunk == 0 || blocks_per_piece == 0)
        return baton_fail(err, BATON_ERR_NOMEM, "%s: a block of %d rows (%llu bytes) exceeds the "
                          "device's binding range", name, VK_ROW_BLOCK,
                          (unsigned long long)block_bytes);
    out->rows = out->part_blk[n - 1] * VK_ROW_BLOCK + out->part_rows[n - 1];
    out->cols = m->cols;
    out->chunk_rows = (int64_t)blocks_per_chunk * VK_ROW_BLOCK;
    out->n_chunks = (int)((n_blocks + (int64_t)blocks_per_chunk - 1) / (int64_t)blocks_per_chunk);
    out->chunks = calloc((size_t)out->n_chunks, sizeof *out->chunks);
    if (out->chunks == NULL) return baton_fail(err, BATON_ERR_NOMEM, "%s: out of memory", name);
    if (up->rows_cols < m->cols) {
        uint16_t *rows = realloc(up->rows, (size_t)up->n_threads * (size_t)m->cols * sizeof *rows);
        if (rows == NULL) {
            vk_matrix_free(ctx, out);
            return baton_fail(err, BATON_ERR_NOMEM, "%s: out of memory", name);
        }
        up->rows = rows;
        up->rows_cols = m->cols;
    }

    baton_status s = BATON_OK;
    uint64_t overflow = 0;
    float overflow_max = 0.0f;
    for (int ci = 0; ci < out->n_chunks && s == BATON_OK; ci++) {
        int64_t b0 = (int64_t)ci * (int64_t)blocks_per_chunk;
        int64_t b1 = b0 + (int64_t)blocks_per_chunk < n_blocks ? b0 + (int64_t)blocks_per_chunk : n_blocks;
        s = vk_buffer_create(ctx, (uint64_t)(b1 - b0) * block_bytes, false, &out->chunks[ci], err);
        if (s != BATON_OK) break;
        for (int64_t p0 = b0; p0 < b1 && s == BATON_OK; p0 += (int64_t)blocks_per_piece) {
            int64_t p1 = p0 + (int64_t)blocks_per_piece < b1 ? p0 + (int64_t)blocks_per_piece : b1;
            int64_t nb = p1 - p0;
            convert_job job = {
                .ms = ms,
                .part_blk = out->part_blk,
                .n_parts = n,
                .cols = m->cols,
                .dst = up->staging.mapped,
                .rows = up->rows,
                .blk_first = p0,
                .n_blocks = nb,
            };
            baton_pool_run(up->pool, convert_blocks, &job);
            for (int t = 0; t < up->n_threads; t++) {
                overflow += job.overflow[t];
                if (job.overflow_max[t] > overflow_max) overflow_max = job.overflow_max[t];
            }
            s = vk_begin(ctx, err);
            if (s != BATON_OK) break;
            vk_copy(ctx, &up->staging, 0, &out->chunks[ci], (uint64_t)(p0 - b0) * block_bytes,
                    (uint64_t)nb * block_bytes);
            s = vk_submit_wait(ctx, err);
            /* Progress in the file's bytes: each block's real rows in its part's dtype. */
            uint64_t bytes_done = 0;
            for (int64_t gb = p0; gb < p1; gb++) {
                int p = n - 1;
                while (p > 0 && gb < out->part_blk[p]) p--;
                int64_t r0 = (gb - out->part_blk[p]) * VK_ROW_BLOCK;
                int64_t real = ms[p]->rows - r0 < VK_ROW_BLOCK ? ms[p]->rows - r0 : VK_ROW_BLOCK;
                if (real < 0) real = 0; /* a block that only pads its part to a tile */
                bytes_done += (uint64_t)real * (uint64_t)m->cols * baton_dtype_size(ms[p]->dtype);
            }
            baton_progress_add(&up->progress, bytes_done);
        }
    }
    if (s == BATON_OK && overflow > 0) {
        s = baton_fail(err, BATON_ERR_RANGE, "%s: %llu values beyond fp16's range (largest |x| "
                       "%g > 65504); the Vulkan engine keeps weights in fp16", name,
                       (unsigned long long)overflow, (double)overflow_max);
    }
    if (s != BATON_OK) {
        if (err != NULL && strstr(err->msg, name) == NULL) baton_error_prefix(err, "%s", name);
        vk_matrix_free(ctx, out);
    }
    return s;
}
