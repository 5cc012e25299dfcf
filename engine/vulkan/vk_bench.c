/* Device copy bandwidth, the yardstick the bench sets weight bandwidth beside. */
#include <stdio.h>
#include <time.h>

#include "vk_backend.h"
#include "vk_context.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

baton_status baton_vk_copy_bandwidth(int device_index, uint64_t bytes, int reps, double *bytes_per_s,
                                     double *shader_bytes_per_s, char *device_name, int name_size,
                                     baton_error *err) {
    *bytes_per_s = 0.0;
    vk_context ctx;
    baton_status s = vk_context_init(&ctx, device_index, err);
    if (s != BATON_OK) return s;
    if (device_name != NULL) snprintf(device_name, (size_t)name_size, "%s", ctx.info.name);
    if (bytes > ctx.info.max_alloc) bytes = ctx.info.max_alloc;
    bytes &= ~(uint64_t)255;
    vk_buffer src, dst;
    s = vk_buffer_create(&ctx, bytes, false, &src, err);
    if (s != BATON_OK) goto out_ctx;
    s = vk_buffer_create(&ctx, bytes, false, &dst, err);
    if (s != BATON_OK) goto out_src;
    /* One untimed copy first (first-touch of the pages), then reps timed ones. */
    s = vk_begin(&ctx, err);
    if (s != BATON_OK) goto out_dst;
    vkCmdFillBuffer(ctx.cmd, src.buffer, 0, bytes, 0x3c003c00u);
    vk_barrier(&ctx);
    vk_copy(&ctx, &src, 0, &dst, 0, bytes);
    s = vk_submit_wait(&ctx, err);
    if (s != BATON_OK) goto out_dst;
    s = vk_begin(&ctx, err);
    if (s != BATON_OK) goto out_dst;
    vk_timestamp(&ctx, 0);
    for (int i = 0; i < reps; i++) {
        vk_copy(&ctx, i % 2 ? &dst : &src, 0, i % 2 ? &src : &dst, 0, bytes);
        vk_barrier(&ctx);
    }
    vk_timestamp(&ctx, 1);
    double t0 = now_s();
    s = vk_submit_wait(&ctx, err);
    double wall = now_s() - t0;
    if (s != BATON_OK) goto out_dst;
    double t = vk_elapsed_s(&ctx);
    if (!(t > 0.0)) t = wall;
    *bytes_per_s = (double)bytes * reps / t;
    if (shader_bytes_per_s != NULL) {
        /* The same through a compute shader, counting bytes read and written. */
        uint64_t n = bytes < ctx.info.max_storage_range ? bytes : ctx.info.max_storage_range & ~(uint64_t)255;
        struct {
            uint32_t count;
        } pc = {(uint32_t)(n / 16)};
        s = vk_begin(&ctx, err);
        if (s != BATON_OK) goto out_dst;
        vk_timestamp(&ctx, 0);
        for (int i = 0; i < reps; i++) {
            vk_bind binds[2] = {{.buf = i % 2 ? &dst : &src, .range = n}, {.buf = i % 2 ? &src : &dst, .range = n}};
            vk_dispatch(&ctx, BATON_SHADER_copy_u32_u32, binds, 2, &pc, sizeof pc, 4096, 1, 1);
            vk_barrier(&ctx);
        }
        vk_timestamp(&ctx, 1);
        t0 = now_s();
        s = vk_submit_wait(&ctx, err);
        wall = now_s() - t0;
        if (s != BATON_OK) goto out_dst;
        t = vk_elapsed_s(&ctx);
        if (!(t > 0.0)) t = wall;
        *shader_bytes_per_s = 2.0 * (double)n * reps / t;
    }
out_dst:
    vk_buffer_destroy(&ctx, &dst);
out_src:
    vk_buffer_destroy(&ctx, &src);
out_ctx:
    vk_context_free(&ctx);
    return s;
}
