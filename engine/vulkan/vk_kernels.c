#include "vk_kernels.h"

#include <assert.h>
#include <string.h>

_Static_assert(VK_KIND_B32 - VK_KIND_B8 == VK_TIER_32 && VK_KIND_B64 - VK_KIND_B8 == VK_TIER_64 &&
               VK_TIER_8 == 0, "the batched kinds follow the tiers");

const vk_matvec_config vk_matvec_configs[VK_MATVEC_CONFIGS] = {
#define TWINS(name) BATON_SHADER_##name##_ln, BATON_SHADER_##name##_wkv
    {"wr32 u8 xs", BATON_SHADER_matmul_f16_f32_b1_wr32_xs, 32, 8, 1,
     TWINS(matmul_f16_f32_b1_wr32_xs)},
    {"wr8 u8 (fallback)", BATON_SHADER_matmul_f16_f32_b1, 8, 8, 0, -1, -1},
    {"wr4 u8", BATON_SHADER_matmul_f16_f32_b1_wr4, 4, 8, 0, -1, -1},
    {"wr16 u8", BATON_SHADER_matmul_f16_f32_b1_wr16, 16, 8, 0, -1, -1},
    {"wr32 u8", BATON_SHADER_matmul_f16_f32_b1_wr32, 32, 8, 0, -1, -1},
    {"wr8 u4", BATON_SHADER_matmul_f16_f32_b1_u4, 8, 4, 0, -1, -1},
    {"wr8 u16", BATON_SHADER_matmul_f16_f32_b1_u16, 8, 16, 0, -1, -1},
    {"wr8 u8 xs", BATON_SHADER_matmul_f16_f32_b1_xs, 8, 8, 1, TWINS(matmul_f16_f32_b1_xs)},
    {"wr16 u8 xs", BATON_SHADER_matmul_f16_f32_b1_wr16_xs, 16, 8, 1,
     TWINS(matmul_f16_f32_b1_wr16_xs)},
    {"wr16 u16 xs", BATON_SHADER_matmul_f16_f32_b1_wr16_u16_xs, 16, 16, 1,
     TWINS(matmul_f16_f32_b1_wr16_u16_xs)},
#undef TWINS
};

enum { MM_XT = 80 }; /* XT in matmul.comp: chunks per segment per staged tile of x */

uint32_t vk_matvec_shared_bytes(int i) {
    assert(i >= 0 && i < VK_MATVEC_CONFIGS);
    const vk_matvec_config *c = &vk_matvec_configs[i];
    uint32_t part = MM_SEGS * 1 * c->wr * 4;                 /* part[SEGS][G][WR] floats */
    uint32_t xs = c->xs ? MM_SEGS * (2 * MM_XT + 1) * 16 : 0; /* xs[SEGS][XROW] vec4 */
    return part + xs;
}

/* Whether the device can run matvec configuration i, its pipeline built. */
static baton_status matvec_ready(vk_context *ctx, int i, baton_error *err) {
    assert(i >= 0 && i < VK_MATVEC_CONFIGS);
    const vk_matvec_config *c = &vk_matvec_configs[i];
    uint32_t need = vk_matvec_shared_bytes(i);
    if (need > ctx->info.max_shared_bytes || MM_SEGS * c->wr > ctx->info.max_workgroup_invocations)
        return baton_fail(err, BATON_ERR_UNSUPPORTED, "matvec %s needs %u bytes of shared memory "
                          "and %u invocations (the device: %u, %u)", c->name, need, MM_SEGS * c->wr,
                          ctx->info.max_shared_bytes, ctx->info.max_workgroup_invocations);
    return vk_pipeline_ensure(ctx, c->shader, err);
}

baton_status vk_matvec_select(vk_context *ctx, int i, baton_error *err) {
    baton_status s = matvec_ready(ctx, i, err);
    if (s != BATON_OK) return s;
    if (ctx->matvec != i) vk_replays_invalidate(ctx);
    ctx->matvec = i;
    return BATON_OK;
}

const vk_batched_config vk_batched_configs[VK_BATCHED_CONFIGS] = {
    {"b8 wr32", BATON_SHADER_matmul_f16_f32_b8, 8, 32, 1},
    {"b8 wr16 rt2", BATON_SHADER_matmul_f16_f32_b8_rt2, 8, 16, 2},
    {"b8 wr8 rt4", BATON_SHADER_matmul_f16_f32_b8_rt4, 8, 8, 4},
    {"b32 wr32", BATON_SHADER_matmul_f16_f32_b32, 32, 32, 1},
    {"b32 wr16 rt2", BATON_SHADER_matmul_f16_f32_b32_rt2, 32, 16, 2},
    {"b32 wr8 rt4", BATON_SHADER_matmul_f16_f32_b32_rt4, 32, 8, 4},
    {"b64 wr16 rt2", BATON_SHADER_matmul_f16_f32_b64_rt2, 64, 16, 2},
};

bool vk_batched_fits(int i, int tier) {
    assert(i >= 0 && i < VK_BATCHED_CONFIGS);
    uint32_t cb = vk_batched_configs[i].cb;
    return tier == VK_TIER_8 ? cb == 8 : tier == VK_TIER_32 ? cb == 32 : cb == 32 || cb == 64;
}

baton_status vk_batched_set(vk_context *ctx, int tier, int i, baton_error *err) {
    assert(i >= 0 && i < VK_BATCHED_CONFIGS && tier >= 0 && tier < VK_TIERS);
    if (!vk_batched_fits(i, tier))
        return baton_fail(err, BATON_ERR_ARG, "matmul %s cannot serve steps of %s tokens",
                          vk_batched_configs[i].name, tier == VK_TIER_8 ? "2 to 8"
                          : tier == VK_TIER_32 ? "9 to 32" : "more than 32");
    baton_status s = vk_pipeline_ensure(ctx, vk_batched_configs[i].shader, err);
    if (s != BATON_OK) return s;
    int *slot = tier == VK_TIER_8 ? &ctx->mm8 : tier == VK_TIER_32 ? &ctx->mm32 : &ctx->mm64;
    if (*slot != i) vk_replays_invalidate(ctx);
    *slot = i;
    return BATON_OK;
}

baton_status vk_batched_select(vk_context *ctx, int i, baton_error *err) {
    baton_status s = BATON_OK;
    for (int tier = 0; tier < VK_TIERS && s == BATON_OK; tier++)
        if (vk_batched_fits(i, tier)) s = vk_batched_set(ctx, tier, i, err);
    return s;
}

void vk_kernel_defaults(const vk_context *ctx, int *matvec, int *mm8, int *mm32, int *mm64) {
    bool cpu = strcmp(ctx->info.type, "cpu") == 0;
    *matvec = cpu ? VK_MATVEC_CPU
                  : vk_matvec_shared_bytes(0) <= ctx->info.max_shared_bytes ? 0 : VK_MATVEC_FALLBACK;
    *mm8 = cpu ? VK_BATCHED_8_CPU : 0;
    *mm32 = *mm64 = cpu ? VK_BATCHED_32_CPU : VK_BATCHED_32_DEFAULT;
}

baton_status vk_kernels_reset(vk_context *ctx, baton_error *err) {
    baton_status s = vk_matvec_select(ctx, ctx->start.matvec, err);
    if (s == BATON_OK) s = vk_batched_set(ctx, VK_TIER_8, ctx->start.mm8, err);
    if (s == BATON_OK) s = vk_batched_set(ctx, VK_TIER_32, ctx->start.mm32, err);
    if (s == BATON_OK) s = vk_batched_set(ctx, VK_TIER_64, ctx->start.mm64, err);
    if (s == BATON_OK && (ctx->coop_few != ctx->start.coop_few || ctx->coop_many != ctx->start.coop_many ||
                          ctx->coop_large != ctx->start.coop_large))
        s = vk_coop_select(ctx, ctx->start.coop_few, ctx->start.coop_many, ctx->start.coop_large, err);
    for (int kind = 0; kind < VK_KINDS && s == BATON_OK; kind++)
        for (int role = VK_ROLE_NONE + 1; role < VK_ROLES && s == BATON_OK; role++)
            s = vk_kind_select_role(ctx, kind, role, ctx->start.role_config[kind][role], err);
    return s;
}

int vk_tune_pick(const double *secs, int n, int current, double margin) {
    int fastest = -1;
    for (int i = 0; i < n; i++)
        if (secs[i] > 0.0 && (fastest < 0 || secs[i] < secs[fastest])) fastest = i;
    if (fastest < 0) return current;
    if (current < 0 || current >= n || !(secs[current] > 0.0)) return fastest;
    return secs[fastest] < margin * secs[current] ? fastest : current;
}

bool vk_tune_coop_wins(double one_fp32, double one_coop, double many_fp32, double many_coop) {
    if (!(one_fp32 > 0.0 && one_coop > 0.0)) return false;
    bool many = many_fp32 > 0.0 || many_coop > 0.0;
    if (many && !(many_fp32 > 0.0 && many_coop > 0.0)) return false;
    if (!many) return one_coop <= VK_COOP_GAIN * one_fp32;
    return many_coop <= VK_COOP_GAIN * many_fp32 && one_coop <= VK_COOP_SLACK * one_fp32;
}

void vk_row_split(uint32_t C, uint32_t rows, uint32_t spread, uint32_t *groups, uint32_t *chans) {
    uint32_t most = (C + 255) / 256, g = (spread + rows - 1) / rows;
    if (g > most) g = most;
    if (g < 1) g = 1;
    *chans = (C + g - 1) / g;
    *groups = (C + *chans - 1) / *chans;
}

const vk_coop_config vk_coop_configs[VK_COOP_CONFIGS] = {
    /* Steps of up to 8 tokens, x staged as they go. t4: one product a chunk per fragment of
     * weights at one token (x's fragment holds 4 tokens' hi and lo). Before hi and lo were
     * columns of one fragment, the best on the H100 (run E, then two products a chunk) was
     * r32 t8 db at 0.81x the fp32 matvec; the 16-row ones ran at 0.52x to 0.59x. */
    {"r32 t4 db", BATON_SHADER_matmul_coop_r32_t4_db,
     BATON_SHADER_matmul_coop_r32_t4_db_emulated, 32, 4, 8, 2, false, 1},
    {"r32 t4", BATON_SHADER_matmul_coop_r32_t4,
     BATON_SHADER_matmul_coop_r32_t4_emulated, 32, 4, 8, 8, false, 1},
    {"r32 t4 k16", BATON_SHADER_matmul_coop_r32_t4_k16,
     BATON_SHADER_matmul_coop_r32_t4_k16_emulated, 32, 4, 16, 4, false, 1},
    {"r64 t4 db", BATON_SHADER_matmul_coop_r64_t4_db,
     BATON_SHADER_matmul_coop_r64_t4_db_emulated, 64, 4, 4, 2, false, 1},
    {"r32 t8 db", BATON_SHADER_matmul_coop_r32_t8_db,
     BATON_SHADER_matmul_coop_r32_t8_db_emulated, 32, 8, 8, 2, false, 1},
    {"r32 t8", BATON_SHADER_matmul_coop_r32_t8,
     BATON_SHADER_matmul_coop_r32_t8_emulated, 32, 8, 8, 8, false, 1},
    /* g: x split once per product by split.comp and read from memory, not staged per workgroup
     * and round: no barriers in the rounds (double-buffered). On the H100 (run E) r32 t32 g,
     * then with hi and lo in separate fragments (the accumulators of r32 t16 now), ran 64-token
     * products at 25 to 42 TFLOP/s, the staging many-token ones it replaced at 4 to 13. */
    {"r32 t4 g", BATON_SHADER_matmul_coop_r32_t4_g,
     BATON_SHADER_matmul_coop_r32_t4_g_emulated, 32, 4, 8, 2, true, 1},
    {"r32 t32 g", BATON_SHADER_matmul_coop_r32_t32_g,
     BATON_SHADER_matmul_coop_r32_t32_g_emulated, 32, 32, 4, 2, true, 1},
    {"r32 t16 g", BATON_SHADER_matmul_coop_r32_t16_g,
     BATON_SHADER_matmul_coop_r32_t16_g_emulated, 32, 16, 4, 1, true, 1},
    {"r64 t16 g", BATON_SHADER_matmul_coop_r64_t16_g,
     BATON_SHADER_matmul_coop_r64_t16_g_emulated, 64, 16, 4, 2, true, 1},
    /* gp: a round's x fragments load a round ahead too, beside its weight fragments (not yet
     * measured on a GPU). */
    {"r32 t32 gp", BATON_SHADER_matmul_coop_r32_t32_gp,
     BATON_SHADER_matmul_coop_r32_t32_gp_emulated, 32, 32, 2, 2, true, 1},
    {"r32 t16 gp", BATON_SHADER_matmul_coop_r32_t16_gp,
     BATON_SHADER_matmul_coop_r32_t16_gp_emulated, 32, 16, 4, 1, true, 1},
    /* f: a grid of subgroups (4 or 2 rows of them, or 8), each its own 32 rows by 16 or 32
     * tokens over every segment (FK), the workgroup's weights and x shared through L1: at 64
     * tokens f128x64 reads a third of r32 t32's bytes from L2 (not yet run on a GPU). */
    {"f128x32", BATON_SHADER_matmul_coop_f128x32,
     BATON_SHADER_matmul_coop_f128x32_emulated, 128, 32, 4, 2, true, 4},
    {"f64x64", BATON_SHADER_matmul_coop_f64x64,
     BATON_SHADER_matmul_coop_f64x64_emulated, 64, 64, 4, 1, true, 2},
    {"f128x64", BATON_SHADER_matmul_coop_f128x64,
     BATON_SHADER_matmul_coop_f128x64_emulated, 128, 64, 2, 2, true, 4},
    {"f256x32", BATON_SHADER_matmul_coop_f256x32,
     BATON_SHADER_matmul_coop_f256x32_emulated, 256, 32, 2, 1, true, 8},
};

bool vk_coop_few(int i) {
    assert(i >= 0 && i < VK_COOP_CONFIGS);
    return vk_coop_configs[i].tn <= VK_COOP_FEW_TOKENS;
}

uint32_t vk_coop_shared_bytes(int i, bool emulated) {
    assert(i >= 0 && i < VK_COOP_CONFIGS);
    const vk_coop_config *c = &vk_coop_configs[i];
    uint32_t ks = 8 * (emulated ? c->kr_emulated : c->kr);
    /* x (staged ones: 4 or 8 tokens), ks rows of TNP: emulated a uint (hi, lo) per token, else
     * a float16_t per token and half, padded to 24 at 8 tokens; part[SEGS][RM][8] floats (RM:
     * a subgroup's rows). */
    uint32_t row = emulated ? c->tn * 4 : (c->tn == 4 ? 8 : 2 * c->tn + 8) * 2;
    return (c->xg ? 0 : MM_SEGS * ks * row) + MM_SEGS * (c->rm / c->sr) * 8 * 4;
}

baton_status vk_coop_xsplit_reserve(vk_context *ctx, VkDeviceSize bytes, baton_error *err) {
    if (ctx->xsplit.size >= bytes) return BATON_OK;
    vk_buffer grown;
    baton_status s = vk_buffer_create(ctx, bytes, false, &grown, err);
    if (s != BATON_OK) return s;
    vk_buffer_destroy(ctx, &ctx->xsplit);
    ctx->xsplit = grown;
    vk_replays_invalidate(ctx);
    return BATON_OK;
}

/* Splits each group's x (pc's x_off, T tokens of K) into ctx->xsplit for an XG product, and
 * orders the split before the product. */
static void record_split(vk_context *ctx, const pc_matmul *pc, const vk_buffer *x) {
    uint64_t end = 0;
    pc_split ps = {.K = pc->K, .T = pc->T, .n_groups = pc->n_groups};
    for (uint32_t g = 0; g < pc->n_groups; g++) {
        ps.x_off[g] = pc->x_off[g];
        uint64_t e = ((uint64_t)pc->x_off[g] + ((uint64_t)pc->T + 63) * (pc->K / 4)) * 16;
        if (e > end) end = e;
    }
    assert(end <= ctx->xsplit.size); /* vk_coop_xsplit_reserve */
    (void)end;
    uint64_t items = (uint64_t)pc->n_groups * pc->T * (pc->K / 8);
    uint64_t groups = (items + 63) / 64;
    vk_bind binds[4] = {{.buf = &ctx->dummy}, {.buf = x}, {.buf = &ctx->xsplit}, {.buf = &ctx->dummy}};
    vk_dispatch(ctx, BATON_SHADER_split_f32_f16, binds, 4, &ps, sizeof ps,
                (uint32_t)(groups < 65535 ? groups : 65535), 1, 1);
    vk_barrier_compute(ctx);
}

static baton_status coop_check(const vk_context *ctx, int i, baton_error *err) {
    uint32_t need = vk_coop_shared_bytes(i, ctx->coopmat_emulated);
    if (need > ctx->info.max_shared_bytes || 32 * MM_SEGS > ctx->info.max_workgroup_invocations)
        return baton_fail(err, BATON_ERR_UNSUPPORTED, "tensor-core matmul %s needs %u bytes of "
                          "shared memory and %u invocations (the device: %u, %u)",
                          vk_coop_configs[i].name, need, 32 * MM_SEGS, ctx->info.max_shared_bytes,
                          ctx->info.max_workgroup_invocations);
    const vk_coop_config *c = &vk_coop_configs[i];
    return vk_pipeline_ensure((vk_context *)ctx, ctx->coopmat_emulated ? c->emulated : c->shader, err);
}

baton_status vk_coop_select(vk_context *ctx, int few, int many, int large, baton_error *err) {
    assert(few >= 0 && few < VK_COOP_CONFIGS && many >= 0 && many < VK_COOP_CONFIGS &&
           large >= 0 && large < VK_COOP_CONFIGS);
    if (!vk_coop_few(few))
        return baton_fail(err, BATON_ERR_ARG, "tensor-core matmul %s is for steps of more than %d "
                          "tokens", vk_coop_configs[few].name, VK_COOP_FEW_TOKENS);
    if (vk_coop_few(many) || vk_coop_few(large))
        return baton_fail(err, BATON_ERR_ARG, "tensor-core matmul %s is for steps of up to %d tokens",
                          vk_coop_configs[vk_coop_few(many) ? many : large].name, VK_COOP_FEW_TOKENS);
    baton_status s = coop_check(ctx, few, err);
    if (s == BATON_OK) s = coop_check(ctx, many, err);
    if (s == BATON_OK) s = coop_check(ctx, large, err);
    if (s != BATON_OK) return s;
    if (ctx->coop_few != few || ctx->coop_many != many || ctx->coop_large != large)
        vk_replays_invalidate(ctx);
    ctx->coop_few = few;
    ctx->coop_many = many;
    ctx->coop_large = large;
    return BATON_OK;
}

void vk_kind_clear_roles(vk_context *ctx, int kind) {
    for (int role = 0; role < VK_ROLES; role++) {
        if (ctx->role_config[kind][role] >= 0) vk_replays_invalidate(ctx);
        ctx->role_config[kind][role] = -1;
    }
}

baton_status vk_kind_select_role(vk_context *ctx, int kind, int role, int i, baton_error *err) {
    assert(kind >= 0 && kind < VK_KINDS && role > VK_ROLE_NONE && role < VK_ROLES);
    if (i >= 0) {
        baton_status s;
        if (kind == VK_KIND_MATVEC) {
            s = matvec_ready(ctx, i, err);
        } else if (kind <= VK_KIND_B64) {
            int tier = kind - VK_KIND_B8; /* VK_TIER_8, _32, _64 */
            if (!vk_batched_fits(i, tier))
                return baton_fail(err, BATON_ERR_ARG, "matmul %s cannot serve that tier",
                                  vk_batched_configs[i].name);
            s = vk_pipeline_ensure(ctx, vk_batched_configs[i].shader, err);
        } else {
            if (vk_coop_few(i) != (kind == VK_KIND_COOP_FEW))
                return baton_fail(err, BATON_ERR_ARG, "tensor-core matmul %s is not a %s-token one",
                                  vk_coop_configs[i].name, kind == VK_KIND_COOP_FEW ? "few" : "many");
            s = coop_check(ctx, i, err);
        }
        if (s != BATON_OK) return s;
    }
    if (ctx->role_config[kind][role] != i) vk_replays_invalidate(ctx);
    ctx->role_config[kind][role] = i;
    return BATON_OK;
}

int vk_kind_config(const vk_context *ctx, int kind, int role) {
    int own = role > VK_ROLE_NONE && role < VK_ROLES ? ctx->role_config[kind][role] : -1;
    if (own >= 0) return own;
    const int all[VK_KINDS] = {ctx->matvec, ctx->mm8,      ctx->mm32,      ctx->mm64,
                               ctx->coop_few, ctx->coop_many, ctx->coop_large};
    return all[kind];
}

/* ln, wkv: NULL, or the input a one-token product computes itself (vk_record_matmul_ln,
 * vk_record_matmul_wkv). */
static void record_parts(vk_context *ctx, const vk_matrix *w, const vk_matmul_part *parts,
                         const vk_buffer *x, const vk_buffer *y, const vk_buffer *m, uint32_t m_off,
                         uint32_t T, const vk_ln_input *ln, const vk_wkv_input *wkv) {
    assert(w->n_parts >= 1 && w->n_parts <= 3 && !(ln != NULL && wkv != NULL));
    assert((ln == NULL && wkv == NULL) || (T == 1 && !ctx->coopmat));
    baton_shader_id shader;
    uint32_t cb, wr; /* tokens and rows per workgroup: CB and WR * RT in matmul.comp */
    bool xg = false;
    if (ctx->coopmat) {
        int kind = T <= VK_COOP_FEW_TOKENS    ? VK_KIND_COOP_FEW
                 : T <= VK_COOP_MANY_TOKENS ? VK_KIND_COOP_MANY
                                            : VK_KIND_COOP_LARGE;
        const vk_coop_config *cc = &vk_coop_configs[vk_kind_config(ctx, kind, w->role)];
        shader = ctx->coopmat_emulated ? cc->emulated : cc->shader;
        cb = cc->tn;
        wr = cc->rm;
        xg = cc->xg;
    } else if (T <= 1) {
        const vk_matvec_config *mv = &vk_matvec_configs[vk_kind_config(ctx, VK_KIND_MATVEC, w->role)];
        int twin = ln != NULL ? mv->ln : wkv != NULL ? mv->wkv : (int)mv->shader;
        assert(twin >= 0);
        shader = (baton_shader_id)twin;
        cb = 1;
        wr = mv->wr;
    } else {
        int kind = T <= 8 ? VK_KIND_B8 : T <= 32 ? VK_KIND_B32 : VK_KIND_B64;
        const vk_batched_config *bc = &vk_batched_configs[vk_kind_config(ctx, kind, w->role)];
        shader = bc->shader;
        cb = bc->cb;
        wr = bc->wr * bc->rt;
    }
    uint32_t nc = (uint32_t)(w->cols / 8);
    pc_matmul_ln pl = {0};
    pc_matmul_wkv pw = {0};
    pc_matmul pc = {
        .K = (uint32_t)w->cols,
        .T = T,
        .cps = (nc + MM_SEGS - 1) / MM_SEGS,
        .n_groups = (uint32_t)w->n_parts,
        .m_off = m_off,
        .blk_1 = w->n_parts > 1 ? (uint32_t)w->part_blk[1] : 0,
        .blk_2 = w->n_parts > 2 ? (uint32_t)w->part_blk[2] : 0,
    };
    for (int p = 0; p < w->n_parts; p++) {
        assert(parts[p].x_off % 4 == 0);
        pc.rows[p] = (uint32_t)w->part_rows[p];
        /* ln: every part reads the residual row; wkv: x holds k, v and r from 0 */
        pc.x_off[p] = ln != NULL || wkv != NULL ? 0 : parts[p].x_off / 4;
        pc.y_off[p] = parts[p].y_off;
        pc.y_stride[p] = parts[p].y_stride;
        pc.epi[p] = parts[p].epilogue;
        if (ln != NULL) pl.mix[p] = ln->mix[p];
    }
    if (ln != NULL) {
        pl.ln_w_off = ln->w_off;
        pl.ln_b_off = ln->b_off;
        pl.state_row = ln->state_row;
        pl.seq_slot_off = ln->seq_slot_off;
        pl.xx_group = ln->xx_part;
    }
    if (xg) {
        record_split(ctx, &pc, x);
        x = &ctx->xsplit;
    }
    if (wkv != NULL) {
        assert(w->n_parts == 1 && wkv->kvr_stride % 4 == 0);
        pw.u_off = wkv->u_off;
        pw.w_off = wkv->w_off;
        pw.seq_slot_off = wkv->seq_slot_off;
        pw.kvr_stride = wkv->kvr_stride;
        pw.next_stride = wkv->next_stride;
    }
    for (int c = 0; c < w->n_chunks; c++) {
        int64_t row0 = (int64_t)c * w->chunk_rows;
        int64_t rows = w->rows - row0 < w->chunk_rows ? w->rows - row0 : w->chunk_rows;
        int64_t blocks = (rows + VK_ROW_BLOCK - 1) / VK_ROW_BLOCK;
        pc.blk0 = (uint32_t)(row0 / VK_ROW_BLOCK);
        pc.n_blk = (uint32_t)blocks;
        vk_bind binds[8] = {{.buf = &w->chunks[c]}, {.buf = x}, {.buf = y},
                            {.buf = m ? m : &ctx->dummy}};
        const void *push = &pc;
        uint32_t push_size = sizeof pc;
        if (ln != NULL) {
            binds[4].buf = ln->state;
            binds[5].buf = ln->params;
            binds[6].buf = ln->info;
            binds[7] = (vk_bind){.buf = ln->xx, .offset = (VkDeviceSize)ln->xx_off * 4};
            pl.mm = pc;
            push = &pl;
            push_size = sizeof pl;
        } else if (wkv != NULL) {
            binds[3].buf = wkv->next;
            binds[4].buf = wkv->state;
            binds[5].buf = wkv->params;
            binds[6].buf = wkv->info;
            binds[7].buf = wkv->xx;
            pw.mm = pc;
            push = &pw;
            push_size = sizeof pw;
        }
        /* wr rows per workgroup: a part of a block, or (64) a tile of two, the last one of a
         * chunk of an odd number of blocks half empty, or (f) several blocks, the subgroups past
         * the chunk's last idle */
        vk_dispatch(ctx, shader, binds, ln != NULL || wkv != NULL ? 8 : 4, push, push_size,
                    (T + cb - 1) / cb, (uint32_t)((blocks * VK_ROW_BLOCK + wr - 1) / wr), 1);
    }
}

void vk_record_matmul_parts(vk_context *ctx, const vk_matrix *w, const vk_matmul_part *parts,
                            const vk_buffer *x, const vk_buffer *y, const vk_buffer *m,
                            uint32_t m_off, uint32_t T) {
    record_parts(ctx, w, parts, x, y, m, m_off, T, NULL, NULL);
}

enum { MM_LN_SHARED = 256 * 4 }; /* ln.glsl's ln_red */

/* Whether the twin (an LN or WKV variant, -1 for none) of the matvec configuration i can run
 * here, its pipeline built; extra: the shared memory it needs beyond i's. */
static bool twin_ready(vk_context *ctx, int i, int twin, uint32_t extra) {
    if (twin < 0 || vk_matvec_shared_bytes(i) + extra > ctx->info.max_shared_bytes) return false;
    return vk_pipeline_ensure(ctx, (baton_shader_id)twin, NULL) == BATON_OK;
}

bool vk_matvec_ln_ready(vk_context *ctx, const vk_matrix *w) {
    int i = vk_kind_config(ctx, VK_KIND_MATVEC, w->role);
    return twin_ready(ctx, i, vk_matvec_configs[i].ln, MM_LN_SHARED);
}

bool vk_matvec_wkv_ready(vk_context *ctx, const vk_matrix *w) {
    int i = vk_kind_config(ctx, VK_KIND_MATVEC, w->role);
    return w->n_chunks == 1 && twin_ready(ctx, i, vk_matvec_configs[i].wkv, 0);
}

void vk_record_matmul_ln(vk_context *ctx, const vk_matrix *w, const vk_matmul_part *parts,
                         const vk_buffer *x, const vk_buffer *y, const vk_ln_input *ln) {
    record_parts(ctx, w, parts, x, y, NULL, 0, 1, ln, NULL);
}

void vk_record_matmul_wkv(vk_context *ctx, const vk_matrix *w, const vk_buffer *kvr,
                          const vk_buffer *y, const vk_wkv_input *wkv) {
    vk_matmul_part part = {
        .x_off = 0, .y_off = 0, .y_stride = (uint32_t)w->rows, .epilogue = EPI_ADD,
    };
    record_parts(ctx, w, &part, kvr, y, NULL, 0, 1, NULL, wkv);
}

void vk_record_matmul(vk_context *ctx, const vk_matrix *w, const vk_buffer *x, const vk_buffer *y,
                      const vk_buffer *m, uint32_t T, uint32_t y_stride, uint32_t epilogue) {
    assert(w->n_parts == 1);
    vk_matmul_part part = {.x_off = 0, .y_off = 0, .y_stride = y_stride, .epilogue = epilogue};
    vk_record_matmul_parts(ctx, w, &part, x, y, m, 0, T);
}
