/* The kernels' push-constant blocks, mirrored from the .comp files (same order, 32-bit words,
 * sizes asserted), and the matmul recorder shared by the backend and the per-op tests. */
#ifndef BATON_VK_KERNELS_H
#define BATON_VK_KERNELS_H

#include "vk_context.h"
#include "vk_upload.h"

typedef struct {
    uint32_t C, w_off, b_off, row_map_off, chans;
} pc_layernorm;
_Static_assert(sizeof(pc_layernorm) == 20, "layernorm.comp push block");
typedef struct {
    uint32_t C, w_off, b_off, state_row, n_out, mix0_off, mix1_off, mix2_off, tok_seq_off,
        seq_slot_off, seq_first_off, out_stride, chans, save;
} pc_ln_shift;
_Static_assert(sizeof(pc_ln_shift) == 56, "ln_shift.comp push block");
typedef struct {
    uint32_t C, state_row, seq_slot_off, seq_first_off, seq_len_off, n_rows, src_stride;
} pc_state_save;
_Static_assert(sizeof(pc_state_save) == 28, "state_save.comp push block");
typedef struct {
    uint32_t C, u_off, w_off, seq_slot_off, seq_first_off, seq_len_off;
} pc_wkv;
_Static_assert(sizeof(pc_wkv) == 24, "wkv.comp push block");
typedef struct {
    uint32_t K, T, cps, blk0, n_groups, m_off, blk_1, blk_2;
    uint32_t rows[3], x_off[3], y_off[3], y_stride[3], epi[3];
    uint32_t n_blk;
} pc_matmul;
_Static_assert(sizeof(pc_matmul) == 96, "matmul.comp and matmul_coop.comp push block");
typedef struct {
    uint32_t K, T, n_groups, x_off[3];
} pc_split;
_Static_assert(sizeof(pc_split) == 24, "split.comp push block");
typedef struct {
    pc_matmul mm;
    uint32_t ln_w_off, ln_b_off, mix[3], state_row, seq_slot_off, xx_group;
} pc_matmul_ln;
_Static_assert(sizeof(pc_matmul_ln) == 128 && sizeof(pc_matmul_ln) <= VK_PUSH_BYTES,
               "matmul.comp's LN push block");
typedef struct {
    pc_matmul mm;
    uint32_t u_off, w_off, seq_slot_off, kvr_stride, next_stride;
} pc_matmul_wkv;
_Static_assert(sizeof(pc_matmul_wkv) == 116 && sizeof(pc_matmul_wkv) <= VK_PUSH_BYTES,
               "matmul.comp's WKV push block");
typedef struct {
    uint32_t V, all_rows, seq_slot_off, seq_first_off, seq_len_off, params_off, few_max;
} pc_sample;
_Static_assert(sizeof(pc_sample) == 28, "sample.comp push block");
typedef struct {
    uint32_t first, n;
} pc_prefetch;
_Static_assert(sizeof(pc_prefetch) == 8, "prefetch.comp push block");
enum { VK_PREFETCH_WORDS_PER_GROUP = 256 * 8 }; /* 16-byte words a prefetch workgroup reads */
/* The most candidates sample.comp's few-candidates way takes (its shared arrays' size). */
enum { VK_SAMPLE_FEW_MAX = 512 };

/* Workgroups per row (y) and channels each for the LayerNorm kernels (256 threads, each
 * workgroup computing the row's statistics itself, so the split never changes a bit) over rows
 * of C: about `spread` workgroups in all where rows are fewer, at least 256 channels each.
 * VK_LN_SPREAD is the default: on the H100 (run E4) a 64- or 512-token ln_shift, one workgroup
 * a token (20 channels a thread at C 5120), took 36 us a dispatch, a one-token one (20
 * workgroups, one channel a thread) 9. */
enum { VK_LN_SPREAD = 32, VK_LN_SPREAD_MAX = 4096 };
void vk_row_split(uint32_t C, uint32_t rows, uint32_t spread, uint32_t *groups, uint32_t *chans);

enum { EPI_NONE = 0, EPI_SIGMOID = 1, EPI_RELU_SQ = 2, EPI_ADD = 3, EPI_ADD_MUL = 4 };
enum { MM_SEGS = 8 };            /* SEGS in matmul.comp */

/* The one-token matmul (matvec) configurations: [0] is the default the engine uses (x staged in
 * shared memory, 32 rows a workgroup: 1.37x the plain kernel on an H100, docs/PERFORMANCE.md),
 * [VK_MATVEC_FALLBACK] the plain kernel, always built, for devices whose shared memory is too
 * small for [0]; the others are the bench's sweep (on-demand variants). wr is WR (rows per workgroup), unroll UNROLL
 * (weight loads in flight per thread), xs XS (x staged in shared memory) in matmul.comp. All sum
 * in the same order, so every one gives bitwise the same y. */
typedef struct {
    const char *name;
    baton_shader_id shader;
    uint32_t wr, unroll, xs;
    int ln;  /* the twin that normalizes its own input (LN=1; xs ones only), or -1 */
    int wkv; /* the twin that computes its input r * wkv itself (WKV=1; xs ones only), or -1 */
} vk_matvec_config;
enum { VK_MATVEC_CONFIGS = 10, VK_MATVEC_FALLBACK = 1 };
extern const vk_matvec_config vk_matvec_configs[VK_MATVEC_CONFIGS];

/* The shared memory configuration i needs (bytes), mirrored from matmul.comp. */
uint32_t vk_matvec_shared_bytes(int i);

/* Makes configuration i the context's one-token matmul (builds its pipeline), for every matrix
 * but a role's that has its own (vk_kind_select_role): BATON_ERR_UNSUPPORTED when the device
 * has too little shared memory for it, the context unchanged. */
baton_status vk_matvec_select(vk_context *ctx, int i, baton_error *err);

/* The batched matmul configurations: cb tokens, wr lanes and rt rows per thread (wr * rt rows) per
 * workgroup (CB, WR and RT in matmul.comp). Steps of 2 to 8 tokens run ctx->mm8 (a cb 8 one), of
 * 9 to 32 ctx->mm32 (cb 32), of more ctx->mm64 (cb 32 or 64): the tiers. All sum alike (bitwise
 * the same y), so any tier may run any of its configurations. */
typedef struct {
    const char *name;
    baton_shader_id shader;
    uint32_t cb, wr, rt;
} vk_batched_config;
enum { VK_BATCHED_CONFIGS = 7, VK_BATCHED_32_DEFAULT = 3 };
extern const vk_batched_config vk_batched_configs[VK_BATCHED_CONFIGS];
enum { VK_TIER_8, VK_TIER_32, VK_TIER_64, VK_TIERS };

/* Whether configuration i may serve tier (cb 8: the 8-token tier; cb 32: the 32- and 64-token
 * tiers; cb 64: the 64-token one). */
bool vk_batched_fits(int i, int tier);
/* Makes configuration i the tier's, building its pipeline (BATON_ERR_ARG where it does not fit). */
baton_status vk_batched_set(vk_context *ctx, int tier, int i, baton_error *err);
/* Makes configuration i that of every tier it fits. */
baton_status vk_batched_select(vk_context *ctx, int i, baton_error *err);

/* The configurations a context starts with, by device type. GPUs: matvec [0] ([VK_MATVEC_FALLBACK]
 * where shared memory is too small for it), batched [0] and [VK_BATCHED_32_DEFAULT], as the H100
 * sweeps chose. CPU devices (lavapipe): the CPU entries below, which the bench's sweep there
 * found 1.4x to 2.9x faster (docs/PERFORMANCE.md). A backend then tunes them (BATON_VK_TUNE). */
enum { VK_MATVEC_CPU = 3, VK_BATCHED_8_CPU = 2, VK_BATCHED_32_CPU = 5 };
void vk_kernel_defaults(const vk_context *ctx, int *matvec, int *mm8, int *mm32, int *mm64);
/* Selects ctx->start: those defaults, or what the backend's tuning put there. */
baton_status vk_kernels_reset(vk_context *ctx, baton_error *err);

/* Tuning's choice among n configurations of one kind, secs[i] the time each took (<= 0: not
 * measured, e.g. the device cannot run it): the fastest, unless it is not below margin (e.g.
 * 0.97) times the current one's time, then `current` (timing noise does not move the choice);
 * the fastest when `current` was not measured; `current` when none was. */
int vk_tune_pick(const double *secs, int n, int current, double margin);

/* Whether a stage should run every matmul on the tensor cores (BATON_VK_COOPMAT unset or auto),
 * from tuning's best times of the two paths' kernels on its first layer (seconds; <= 0: not
 * timed): at one token (one_*) and at the most tokens the stage runs in a step, up to 64
 * (many_*; <= 0 for both where it runs at most 8). Yes when the tensor cores are at least
 * 1/VK_COOP_GAIN times as fast at the most tokens (at one token where there are no more) and
 * take at most VK_COOP_SLACK times as long at one. The two paths give different bits, so the
 * choice must be clear-cut, not noise: a stage started again on the same device should choose
 * the same. */
#define VK_COOP_GAIN 0.8
#define VK_COOP_SLACK 1.1
bool vk_tune_coop_wins(double one_fp32, double one_coop, double many_fp32, double many_coop);

/* The tensor-core matmul (matmul_coop.comp, used when ctx->coopmat) configurations: rm rows and
 * tn tokens per workgroup, kr chunks per round (kr_emulated in the EMULATE variant, sized for
 * lavapipe's 32 KiB of shared memory and small in the double-buffered ones, so that the tests'
 * K give them many rounds). Steps of up to VK_COOP_FEW_TOKENS run ctx->coop_few (a tn 4 or 8
 * configuration: those that stage x in shared memory as they go, or r32 t4 g), larger ones up
 * to VK_COOP_MANY_TOKENS ctx->coop_many, and larger ones still (prefill) ctx->coop_large (both
 * of the xg ones, which read x split beforehand). "db" and xg: each round's weight
 * fragments load during the round before; "gp": its x fragments too; "f": rm x tn per workgroup
 * from a grid of subgroups, each its own rows and tokens over all of K.
 * All sum in the same order, so any two give bitwise the same y for a token: which one a step
 * runs never changes a sequence's results. [0] and [VK_COOP_MANY_DEFAULT] are the defaults;
 * tuning times the others where it runs. */
typedef struct {
    const char *name;
    baton_shader_id shader, emulated;
    uint32_t rm, tn, kr, kr_emulated;
    bool xg; /* x split beforehand (split.comp into ctx->xsplit) and read from there, not staged */
    uint32_t sr; /* rows of the grid of subgroups (f), each rm / sr rows over all of K; 1: split-K */
} vk_coop_config;
enum { VK_COOP_CONFIGS = 16, VK_COOP_MANY_DEFAULT = 7 };
enum { VK_COOP_FEW_TOKENS = 8, VK_COOP_MANY_TOKENS = 64 }; /* the most tokens of each tier */
extern const vk_coop_config vk_coop_configs[VK_COOP_CONFIGS];

/* Whether configuration i is a few-token one (ctx->coop_few's kind). */
bool vk_coop_few(int i);

/* The shared memory configuration i needs (bytes), mirrored from matmul_coop.comp. */
uint32_t vk_coop_shared_bytes(int i, bool emulated);

/* Makes ctx->xsplit, the split x of the XG configurations (a mirror of an x buffer: the same
 * offsets, 8 hi and 8 lo halves where x has 8 floats), at least `bytes`: at least the largest x
 * buffer a product reads, plus 64 rows of its K past its last token (a workgroup's columns past
 * the step read there). Only between steps (it may replace the buffer). */
baton_status vk_coop_xsplit_reserve(vk_context *ctx, VkDeviceSize bytes, baton_error *err);

/* Makes configurations few, many and large the context's tensor-core matmuls, building their
 * pipelines (the EMULATE variants when ctx->coopmat_emulated): BATON_ERR_UNSUPPORTED when the
 * device's shared memory or workgroup size is too small, BATON_ERR_ARG when few is not a
 * few-token configuration or many or large is; the context unchanged on failure. */
baton_status vk_coop_select(vk_context *ctx, int few, int many, int large, baton_error *err);

/* Per role (VK_ROLE_ATT_KVR ...): configuration i of a kind (VK_KIND_*: its table, e.g.
 * vk_batched_configs for VK_KIND_B32) for that role's matrices instead of the kind's own (-1:
 * the kind's own again), which tuning may find faster for their shape; builds its pipeline.
 * BATON_ERR_ARG where i is not of the kind (a tier it does not fit, a tensor-core one of the
 * other token count), BATON_ERR_UNSUPPORTED where the device cannot run it. Every configuration
 * of a kind sums alike, so no result changes. vk_kind_clear_roles gives every role the kind's
 * own again; vk_kind_config is the configuration a role's matrices run. */
baton_status vk_kind_select_role(vk_context *ctx, int kind, int role, int i, baton_error *err);
void vk_kind_clear_roles(vk_context *ctx, int kind);
int vk_kind_config(const vk_context *ctx, int kind, int role);

/* Where one stacked part of W reads and writes, in floats: x from x_off ([T][K], x_off a multiple
 * of 4), y at y_off ([T][y_stride]), with its epilogue. */
typedef struct {
    uint32_t x_off, y_off, y_stride, epilogue;
} vk_matmul_part;

/* y (+)= W x for T tokens over the chunks of W (x: [T][K], y: [T][y_stride], m: the EPI_ADD_MUL
 * gate or NULL), W one matrix. The variant follows T (1: the context's matvec; 2 to 8, 9 to 32,
 * more: its tiers' batched configurations); all agree bitwise. With ctx->coopmat every T runs
 * matmul_coop.comp instead (ctx->coop_few up to 8 tokens, ctx->coop_many up to 64,
 * ctx->coop_large beyond). */
void vk_record_matmul(vk_context *ctx, const vk_matrix *w, const vk_buffer *x, const vk_buffer *y,
                      const vk_buffer *m, uint32_t T, uint32_t y_stride, uint32_t epilogue);

/* The same for every part of a stacked W (parts[w->n_parts]) in one dispatch per chunk; the
 * EPI_ADD_MUL gate of a part is m[m_off + t * y_stride + n]. Bitwise what each part alone gives. */
void vk_record_matmul_parts(vk_context *ctx, const vk_matrix *w, const vk_matmul_part *parts,
                            const vk_buffer *x, const vk_buffer *y, const vk_buffer *m,
                            uint32_t m_off, uint32_t T);

/* A one-token product whose input is a LayerNorm with the token shift, computed by the product
 * itself (matmul.comp LN): part p's input is ln_mix(LN(x)[c], state[state_row][c], mix[p][c]),
 * bitwise what ln_shift.comp writes, and the rows n < C of part xx_part write xx[n] = LN(x)[n].
 * Offsets are in floats (params) and words (info: the sequence's slot at seq_slot_off). */
typedef struct {
    const vk_buffer *state, *params, *info, *xx;
    uint32_t w_off, b_off, mix[3], state_row, seq_slot_off, xx_part;
    uint32_t xx_off; /* where in xx the rows write (floats; a multiple of the offset alignment) */
} vk_ln_input;

/* Whether matrix w's one-token product can normalize its own input here: the matvec
 * configuration its role runs has an LN twin that the device runs (its pipeline then built). */
bool vk_matvec_ln_ready(vk_context *ctx, const vk_matrix *w);

/* vk_record_matmul_parts for one token whose parts' inputs ln computes from the residual row x
 * (their x_off unused); vk_matvec_ln_ready(ctx, w) must hold, and the path be the fp32 one. */
void vk_record_matmul_ln(vk_context *ctx, const vk_matrix *w, const vk_matmul_part *parts,
                         const vk_buffer *x, const vk_buffer *y, const vk_ln_input *ln);

/* The time mix's output product for one token computing its input, r * wkv, itself (matmul.comp
 * WKV), bitwise what wkv.comp writes, from k, v and r in kvr (at 0, kvr_stride, 2 kvr_stride)
 * and the state before the token; its rows n write channel n's new aa, bb and pp to rows 0 to 2
 * of next (next_stride floats apart) for a later dispatch to save, and the state's ATT_XX = xx. */
typedef struct {
    const vk_buffer *next, *state, *params, *info, *xx;
    uint32_t u_off, w_off, seq_slot_off, kvr_stride, next_stride;
} vk_wkv_input;

/* Whether matrix w's one-token product can compute r * wkv itself here: one chunk, and the
 * matvec configuration its role runs has a WKV twin that the device runs (pipeline built). */
bool vk_matvec_wkv_ready(vk_context *ctx, const vk_matrix *w);

/* y += W (r * wkv) for one token (EPI_ADD); vk_matvec_wkv_ready(ctx, w) must hold, and the path
 * be the fp32 one. */
void vk_record_matmul_wkv(vk_context *ctx, const vk_matrix *w, const vk_buffer *kvr,
                          const vk_buffer *y, const vk_wkv_input *wkv);

#endif
