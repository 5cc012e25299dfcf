/* Weights on the device: each big matrix as fp16 in row chunks that fit one storage-buffer
 * binding, in the interleaved layout matmul.comp reads. Internal to engine/vulkan. */
#ifndef BATON_VK_UPLOAD_H
#define BATON_VK_UPLOAD_H

#include "model.h"
#include "progress.h"
#include "thread_pool.h"
#include "vk_context.h"

enum { VK_ROW_BLOCK = 32 };  /* rows per interleaved block: RB in matmul.comp */
/* Each stacked part starts on a tile of this many blocks, and a chunk holds whole tiles (but
 * where one block is all a binding holds): a workgroup of up to that many blocks' rows
 * (matmul_coop.comp's RM 64, one staging of x for them all) never spans two parts, whose inputs
 * differ, nor two chunks. */
enum { VK_TILE_BLOCKS = 2 };

enum { VK_MATRIX_PARTS = 3 }; /* matrices one vk_matrix may stack (groups in matmul.comp) */

typedef struct {
    int64_t rows, cols;      /* N, K: the stacked rows, each part but the last padded to a tile */
    int64_t chunk_rows;      /* rows per chunk (a multiple of the tile, VK_TILE_BLOCKS blocks, but
                              * where a binding holds one block), the last may be fewer */
    int n_chunks;
    vk_buffer *chunks;       /* [n_chunks] */
    int n_parts;             /* matrices stacked, 1 to VK_MATRIX_PARTS */
    int64_t part_blk[VK_MATRIX_PARTS];  /* each part's first row block */
    int64_t part_rows[VK_MATRIX_PARTS]; /* each part's rows */
    int role;                /* VK_ROLE_*: which one-token matmul configuration it runs */
} vk_matrix;

/* A staging buffer and the threads that convert into it, shared by every upload of a backend. */
typedef struct {
    vk_buffer staging;
    int n_threads;
    baton_pool *pool;   /* n_threads converting a piece of the staging buffer each */
    uint16_t *rows;     /* [n_threads][rows_cols]: each thread's row before it is interleaved */
    int64_t rows_cols;
    baton_progress progress;
} vk_uploader;

baton_status vk_uploader_init(vk_context *ctx, vk_uploader *up, uint64_t total_bytes,
                              baton_error *err);
void vk_uploader_free(vk_context *ctx, vk_uploader *up);

/* Converts m to fp16 and uploads it. A value beyond fp16's range (|x| > 65504) fails the upload
 * with BATON_ERR_RANGE naming `name` and the count, rather than turning silently into inf. */
baton_status vk_matrix_upload(vk_context *ctx, vk_uploader *up, const baton_matrix *m,
                              const char *name, vk_matrix *out, baton_error *err);
/* The same for n (1 to VK_MATRIX_PARTS) matrices of equal cols stacked row-wise, each starting
 * on a tile (zero rows pad the others), so that one dispatch computes all their products. */
baton_status vk_matrix_upload_stack(vk_context *ctx, vk_uploader *up, const baton_matrix *const *ms,
                                    int n, const char *name, vk_matrix *out, baton_error *err);
void vk_matrix_free(vk_context *ctx, vk_matrix *m);

/* The interleaved index (in halves) of element (row, col) within its chunk, for tests. */
static inline uint64_t vk_matrix_index(int64_t row_in_chunk, int64_t col, int64_t cols) {
    int64_t block = row_in_chunk / VK_ROW_BLOCK, lane = row_in_chunk % VK_ROW_BLOCK;
    int64_t chunk8 = col / 8, e = col % 8;
    return (uint64_t)((((block * (cols / 8) + chunk8) * VK_ROW_BLOCK) + lane) * 8 + e);
}

#endif
