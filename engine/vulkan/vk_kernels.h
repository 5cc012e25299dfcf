/* The kernels' push-constant blocks, mirrored from the .comp files (same order, 32-bit words,
 * sizes asserted), and the matmul recorder shared by the backend and the per-op tests. */
#ifndef BATON_VK_KERNELS_H
#define BATON_VK_KERNELS_H

#include "vk_context.h"
#include "vk_upload.h"

typedef struct {
    uint32_t C, w_off, b_off, row_map_off;
} pc_layernorm;
_Static_assert(sizeof(pc_layernorm) == 16, "layernorm.comp push block");
typedef struct {
    uint32_t C, state_row, n_out, mix0_off, mix1_off, mix2_off, tok_seq_off, seq_slot_off,
        seq_first_off;
} pc_token_shift;
_Static_assert(sizeof(pc_token_shift) == 36, "token_shift.comp push block");
typedef struct {
    uint32_t C, state_row, seq_slot_off, seq_first_off, seq_len_off;
} pc_state_save;
_Static_assert(sizeof(pc_state_save) == 20, "state_save.comp push block");
typedef struct {
    uint32_t C, u_off, w_off, seq_slot_off, seq_first_off, seq_len_off;
} pc_wkv;
_Static_assert(sizeof(pc_wkv) == 24, "wkv.comp push block");
typedef struct {
    uint32_t K, n_rows, row0, y_stride, T, cps, epilogue;
} pc_matmul;
_Static_assert(sizeof(pc_matmul) == 28, "matmul.comp push block");
typedef struct {
    uint32_t V, all_rows, seq_slot_off, seq_first_off, seq_len_off, params_off;
} pc_sample;
_Static_assert(sizeof(pc_sample) == 24, "sample.comp push block");

enum { EPI_NONE = 0, EPI_SIGMOID = 1, EPI_RELU_SQ = 2, EPI_ADD = 3, EPI_ADD_MUL = 4 };
enum { MM_SEGS = 8 };            /* SEGS in matmul.comp */

/* y (+)= W x for T tokens over the chunks of W (x: [T][K], y: [T][y_stride], m: the EPI_ADD_MUL
 * gate or NULL). The variant follows T (1, <= 8, else 32 per workgroup); all agree bitwise. */
void vk_record_matmul(vk_context *ctx, const vk_matrix *w, const vk_buffer *x, const vk_buffer *y,
                      const vk_buffer *m, uint32_t T, uint32_t y_stride, uint32_t epilogue);

#endif
