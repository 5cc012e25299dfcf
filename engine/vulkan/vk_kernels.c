#include "vk_kernels.h"

void vk_record_matmul(vk_context *ctx, const vk_matrix *w, const vk_buffer *x, const vk_buffer *y,
                      const vk_buffer *m, uint32_t T, uint32_t y_stride, uint32_t epilogue) {
    baton_shader_id shader = BATON_SHADER_matmul_f16_f32_b32;
    uint32_t cb = 32;
    if (T <= 1) {
        shader = BATON_SHADER_matmul_f16_f32_b1;
        cb = 1;
    } else if (T <= 8) {
        shader = BATON_SHADER_matmul_f16_f32_b8;
        cb = 8;
    }
    uint32_t nc = (uint32_t)(w->cols / 8);
    for (int c = 0; c < w->n_chunks; c++) {
        int64_t row0 = (int64_t)c * w->chunk_rows;
        int64_t rows = w->rows - row0 < w->chunk_rows ? w->rows - row0 : w->chunk_rows;
        pc_matmul pc = {
            .K = (uint32_t)w->cols,
            .n_rows = (uint32_t)rows,
            .row0 = (uint32_t)row0,
            .y_stride = y_stride,
            .T = T,
            .cps = (nc + MM_SEGS - 1) / MM_SEGS,
            .epilogue = epilogue,
        };
        vk_bind binds[4] = {{.buf = &w->chunks[c]}, {.buf = x}, {.buf = y}, {.buf = m ? m : &ctx->dummy}};
        vk_dispatch(ctx, shader, binds, 4, &pc, sizeof pc, (T + cb - 1) / cb,
                    (uint32_t)((rows + VK_ROW_BLOCK - 1) / VK_ROW_BLOCK), 1);
    }
}
