/* The Vulkan backend's state, shared by vk_backend.c (steps, slots, set-up) and vk_tune.c (timing
 * the stage's own matrix products: the bench's profile and the kernel tuning). Private. */
#ifndef BATON_VK_BACKEND_IMPL_H
#define BATON_VK_BACKEND_IMPL_H

#include "vk_backend.h"
#include "vk_context.h"
#include "vk_upload.h"

enum { SAMPLE_PARAM_WORDS = 8 }; /* per sequence in the step info */

/* Per layer, the float offsets of its vectors in the params buffer. */
enum {
    P_LN1_W, P_LN1_B, P_MIX_K, P_MIX_V, P_MIX_R, P_FIRST, P_DECAY, P_LN2_W, P_LN2_B, P_FMIX_K,
    P_FMIX_R, P_LAYER_VECTORS
};
enum { P_LN0_W, P_LN0_B, P_LNOUT_W, P_LNOUT_B, P_GLOBAL_VECTORS };

typedef struct {
    vk_matrix att_kvr;   /* key, value, receptance stacked: one dispatch */
    vk_matrix att_output;
    vk_matrix ffn_kr;    /* key, receptance stacked */
    vk_matrix ffn_value;
    vk_buffer state;     /* [n_slots][5][C] */
} vk_layer;

typedef struct {
    baton_backend base;
    char name[320];
    vk_context ctx;
    int C, F, V, n_layers;
    int max_tokens, max_seqs, n_slots;
    vk_layer *layers;   /* [n_layers] */
    vk_matrix head;
    vk_buffer params;   /* float vectors */
    /* Activations, device-local, [max_tokens][C] each unless said. A "region" is act_stride
     * floats (a multiple of 64, so each region starts on 256 bytes and can be bound alone). */
    vk_buffer x, xx, att;
    vk_buffer xs;       /* regions xk, xv, xr (channel mix: xk, xr) */
    vk_buffer kvr;      /* regions k, v, sigmoid(r) */
    vk_buffer kfr;      /* kf [max_tokens][F] (kf_stride floats), then sigmoid(r) of the channel mix */
    vk_buffer next;     /* [4][next_stride]: a fused one-token layer's new state rows aa, bb, pp
                         * and ffn_xx, saved into the slot once no dispatch reads the old */
    uint32_t act_stride, kf_stride, next_stride;
    uint32_t dispatches, barriers; /* recorded by the last step */
    bool replayed;                 /* the last step's command buffer was recorded before */
    double rec_t0;                 /* when the current command buffer began recording */
    double step_gpu_s, step_record_s; /* the last step: device time (timestamps; < 0: unknown)
                                       * and host time spent recording, over its command buffers */
    vk_buffer logits;   /* [head_rows][V] */
    vk_buffer scratch;  /* [max_seqs][V] sampling probabilities */
    vk_buffer counts;   /* [n_slots][V] generated-token counts */
    vk_buffer tokens;   /* [max_seqs] sampled ids */
    vk_buffer info;     /* the step information, device-local copy */
    vk_buffer up;       /* host-visible: step information, then hidden states in */
    vk_buffer down;     /* host-visible: hidden states or logits out, then tokens */
    vk_buffer io;       /* host-visible: one slot's state (slot_read / slot_write) */
    int head_rows;      /* logits rows per head pass (the binding range allows) */
    /* Word offsets in the step information. */
    uint32_t o_tok_seq, o_seq_slot, o_seq_first, o_seq_len, o_last_map, o_all_map, o_params;
    uint32_t info_words;
    VkDeviceSize up_x_off, down_tok_off;
    char tuning[4096];  /* what vk_backend_tune chose, or why it did not run */
    double upload_s;    /* converting and uploading the weights took this long */
    uint32_t sample_few;/* the most candidates the sampler's few-candidates way takes
                         * (BATON_VK_SAMPLE_FEW; VK_SAMPLE_FEW_MAX unless set) */
    /* Reading weights ahead in one-token steps (record_prefetch): MiB per read, 0 for none;
     * pinned by BATON_VK_PREFETCH, else tuning's choice (none untuned). While a step records:
     * whether it reads ahead, the matrix it reads and the bytes of it read so far. */
    uint32_t prefetch_mib;
    bool prefetch_pinned;
    bool pf_step;
    const vk_matrix *pf_w;
    VkDeviceSize pf_done;
    vk_buffer pf_sink;  /* what prefetch.comp would write (nothing does) */
    /* Fusing in one-token steps (BATON_VK_FUSE_* flags): the k/v/r and FFN key/receptance
     * products compute their input's LayerNorm and token shift themselves (LN), the output
     * product its input r * wkv (WKV), where their matvec configuration has such a twin; pinned
     * by BATON_VK_FUSE, else tuning's choice (none untuned). */
    uint32_t fuse;
    bool fuse_pinned;
    uint32_t ln_spread; /* the LayerNorm kernels' workgroups for few rows (vk_row_split) */
} vk_backend;

/* Which matmul path the backend runs and why, in a few words: "fp32 (no tensor cores)". */
const char *vk_backend_path(const vk_backend *b);

/* The reads ahead tuning tries (MiB; BATON_VK_PREFETCH takes 0 to the largest). */
enum { VK_PREFETCH_MAX_MIB = 64 };

/* Writes the step information of s (vk_step's layout: sequences, slots, spans, row maps, sampling
 * parameters) into the host-visible upload buffer, for a copy into b->info; returns its tokens. */
uint32_t vk_step_info(vk_backend *b, const baton_step *s);

/* Records one layer (index l within the stage) of a step of T tokens in n_seqs sequences. */
void vk_record_layer(vk_backend *b, int l, uint32_t T, uint32_t n_seqs);

/* Appends "; read ahead: ..." and "; fused: ..." for a backend whose reading ahead and fusing
 * tuning did not choose. */
void vk_one_token_notes(const vk_backend *b, char *out, size_t size);

/* Records the reset of a slot's state (every layer) and its token counts. */
void vk_record_slot_reset(vk_backend *b, int slot);

/* The kinds of matmul configuration tuning chooses (VK_KIND_*): the size of a kind's table
 * (vk_matvec_configs, vk_batched_configs or vk_coop_configs), whether entry i is one of the
 * kind (a batched one that fits its tier, a tensor-core one of its token count), its name, and
 * where in ctx->start the kind's configuration is kept. */
int vk_kind_size(int kind);
bool vk_kind_has(int kind, int i);
const char *vk_kind_config_name(int kind, int i);
int *vk_kind_start(vk_context *ctx, int kind);

/* Chooses the fastest matmul configurations for this stage on this device (BATON_VK_TUNE), timing
 * each on the stage's first layer, and makes them the ones vk_kernels_reset returns to; writes
 * what it chose into b->tuning. Overwrites the activations (call it before any step). */
baton_status vk_backend_tune(vk_backend *b, baton_error *err);

/* The tuning cache (vk_tune_cache.c): what a backend's tuning chose, kept in a file per device,
 * driver build, kernel build and stage shape, so that a backend started again with the same
 * ones runs the same choices at once instead of timing again (BATON_VK_TUNE_CACHE). */
enum { VK_TUNE_CACHE_DIR_MAX = 900 };
typedef struct {
    char path[1024]; /* the file, "" where nothing is kept (then why says why) */
    char key[1400];  /* what the file must have been made for, one line */
    char why[256];
    bool off;        /* BATON_VK_TUNE_CACHE=off */
} vk_tune_cache;

/* Where this backend's tuning is kept (its device, driver and kernels, its stage's shape and
 * the settings that tuning does not choose), from BATON_VK_TUNE_CACHE: an absolute directory,
 * or "off" for nowhere; unset, systemd's $CACHE_DIRECTORY, else $XDG_CACHE_HOME/baton, else
 * $HOME/.cache/baton. vk_tune_cache_env_ok: whether a value of BATON_VK_TUNE_CACHE is one of
 * those (unset or empty too). */
bool vk_tune_cache_env_ok(const char *env);
void vk_tune_cache_locate(const vk_backend *b, vk_tune_cache *c);

/* Makes the choices kept in c->path the backend's (kernels, path, fusing, read-ahead and
 * b->tuning, which then says where they came from): true when the file is there, was made for
 * c->key, and every choice in it is one this build and device can run; else false, the backend
 * as it was, and c->why says why not (unchanged where there was simply no file). A failure of
 * the device itself while switching is returned in *st. */
bool vk_tune_cache_load(vk_backend *b, vk_tune_cache *c, baton_status *st, baton_error *err);

/* Writes the backend's tuned choices to c->path (a new file moved into place, so a reader never
 * sees half of one and two writers leave one whole); false, with c->why, where it cannot. */
bool vk_tune_cache_store(const vk_backend *b, vk_tune_cache *c);

#endif
