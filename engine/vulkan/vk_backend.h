/* The Vulkan engine: a baton_backend (engine/backend.h) on any Vulkan 1.2 compute device, and the
 * list of devices with what each offers.
 *
 * Weights live on the device as fp16 (converted from the file's fp32/bf16/fp16 at upload through a
 * bounded staging buffer); activations, the WKV state and every accumulation are fp32. Each big
 * matrix is stored in row chunks that fit the device's storage-buffer range (lavapipe binds at most
 * 128 MiB), so a 14B model's 515 MB head is several buffers.
 *
 * Batch invariance: every output of every matrix product is reduced in one fixed order (8 fixed K
 * segments, each summed sequentially, then the segments in order), whatever the step's size or
 * composition, so a sequence's logits are bitwise the same alone or in any batch.
 *
 * Environment: BATON_VK_VALIDATION=1 enables VK_LAYER_KHRONOS_validation and counts its messages
 * (baton_vk_validation_messages), =sync its synchronization validation as well;
 * BATON_VK_TIMEOUT_S bounds every fence wait (default 120 s);
 * BATON_VK_COOPMAT: whether every matmul runs on the tensor cores where the device has
 * VK_NV_cooperative_matrix (another order of sums, so other bits): unset, tuning chooses; 1
 * always; 0 never (see baton_vk_coopmat_state);
 * BATON_VK_TUNE=1 or 0: whether a new backend times its matmul configurations on its own weights
 * and keeps the fastest (unset: on GPUs, not on CPU devices; see baton_vk_tuning);
 * BATON_VK_SAMPLE_FEW=N (0 to 512, default 512): the most candidate tokens the device sampler
 * cuts and draws from in shared memory before it works over the whole vocabulary (0: always the
 * whole vocabulary; tests);
 * BATON_VK_PREFETCH=N (0 to 64) or auto: the MiB of each matrix product's weights a one-token
 * step reads ahead, beside the dispatches before it (unset or auto: tuning's choice, none
 * untuned; see baton_vk_prefetch_set);
 * BATON_VK_FUSE=1, ln, wkv, 0 or auto: whether a one-token step's products compute their
 * LayerNorms (ln), WKV (wkv) or both (1) themselves (unset or auto: tuning's choice, none
 * untuned; see baton_vk_fuse_set). */
#ifndef BATON_VK_BACKEND_H
#define BATON_VK_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "status.h"

typedef struct {
    int index;                  /* position in the loader's list, what --device vulkan:N names */
    char name[256];
    char type[16];              /* "discrete", "integrated", "virtual", "cpu", "other" */
    uint32_t vendor_id, device_id;
    uint32_t api_version;       /* VK_MAKE_API_VERSION */
    char driver[520];           /* driver name and info, when the device reports them */
    uint32_t driver_version;    /* VkPhysicalDeviceProperties::driverVersion, vendor-encoded */
    uint8_t device_uuid[16];    /* this device (VkPhysicalDeviceIDProperties) */
    uint8_t pipeline_uuid[16];  /* pipelineCacheUUID: the driver build that compiles for it */
    bool usable;                /* Vulkan >= 1.2 with a compute queue: what the engine needs */
    bool storage16;             /* storageBuffer16BitAccess */
    bool float16, int8;         /* shaderFloat16, shaderInt8 */
    bool subgroup_arith;        /* subgroup arithmetic in compute shaders */
    bool coopmat_nv;            /* VK_NV_cooperative_matrix */
    bool coopmat_khr;           /* VK_KHR_cooperative_matrix */
    char coopmat_shapes[512];   /* its NV subgroup shapes, "16x8x8 f16*f16+f32, ..." */
    bool timestamps;            /* timestamp queries on the compute queue */
    uint32_t subgroup_size;
    uint32_t max_shared_bytes;  /* maxComputeSharedMemorySize */
    uint32_t max_workgroup_invocations;
    uint64_t max_storage_range; /* maxStorageBufferRange: the most one binding can see */
    uint64_t max_alloc;         /* maxMemoryAllocationSize */
    uint64_t device_local_bytes;/* sum of DEVICE_LOCAL heaps */
    uint64_t host_bytes;        /* sum of the other heaps */
    int score;                  /* higher is preferred by device_index -1 */
} baton_vk_device_info;

/* Lists the Vulkan devices. *out is malloc'ed (free it); *count may be 0. Fails with
 * BATON_ERR_UNAVAILABLE when there is no Vulkan loader or driver at all. */
baton_status baton_vk_devices_list(baton_vk_device_info **out, int *count, baton_error *err);

/* Resolves a device spec: "" or "best" (-1), a number N, or a substring of a device name
 * (case-insensitive, first match), e.g. "nvidia", "llvmpipe". */
baton_status baton_vk_device_resolve(const char *spec, int *device_index, baton_error *err);

/* A backend on device device_index (-1: the best usable device: discrete > integrated > virtual
 * > CPU, then the largest device-local memory). Uploads the stage's weights (progress on a
 * terminal). Errors: BATON_ERR_UNAVAILABLE (no device), BATON_ERR_DEVICE (a Vulkan call failed),
 * BATON_ERR_NOMEM (device memory or limits), BATON_ERR_RANGE (a weight beyond fp16's range),
 * BATON_ERR_UNSUPPORTED (n_embd or n_ffn not a multiple of 8). */
baton_status baton_vulkan_backend_new(const baton_model *model, const baton_stage_config *config,
                                      int device_index, baton_backend **out, baton_error *err);

/* What the backend's tuning chose, once its weights were on the device: "tuned in 0.41 s: matvec
 * wr16 u8 (1.12x as fast as wr32 u8 xs); 8-token ...", or "not tuned ..." and why. Each kind
 * of matmul configuration (steps of one token, 2 to 8, 9 to 32, more; or the tensor-core path's
 * few- and many-token ones when it is in use) is timed on the stage's first layer at 1, 8, 32
 * and 64 tokens (within max_tokens); the default gives way only to one at least 3% faster (and
 * a layer product whose own time is 3% shorter under another configuration of the kind runs
 * that one: "matvec wr8 u8 for att.output (1.10x as fast as wr32 u8 xs there)"). Last, how much
 * to read ahead. Every
 * configuration of a kind sums alike, so tuning never changes a result, only the speed; one
 * whose results on this device are not bitwise the default's is named ("NOT BITWISE ...") and
 * never chosen. baton_vk_kernels_reset returns to what it chose. */
const char *baton_vk_tuning(const baton_backend *be);

/* The seconds a Vulkan backend took to convert and upload its weights (its tuning apart). */
double baton_vk_upload_s(const baton_backend *be);

/* The compute dispatches and barriers the last step of a Vulkan backend recorded (the bench's
 * measure of per-step overhead). */
void baton_vk_step_counts(const baton_backend *be, uint32_t *dispatches, uint32_t *barriers);
/* Whether the last step submitted a command buffer recorded for an earlier step of the same
 * shape (token and sequence counts, what it asked for) instead of recording one: the backend
 * keeps a few, made stale by any change of kernel configuration. */
bool baton_vk_step_replayed(const baton_backend *be);

/* The device time of the last step of a Vulkan backend (timestamps around each of its command
 * buffers, summed; < 0 when the queue has no timestamps) and the host time spent recording them:
 * what the step's wall time is beside what the device was busy. */
void baton_vk_step_times(const baton_backend *be, double *gpu_s, double *record_s);

/* Profiling: while on, every step records a timestamp before each of its barriers (and keeps no
 * command buffer for replay), and the device time of each group of dispatches between barriers
 * is added to the shader dispatched first in it: where a step's time goes, kernel by kernel. The
 * timestamps cost a little themselves; turn it off to measure. Turning it on clears what was
 * gathered. False when the device's queue has no timestamps. */
bool baton_vk_profile(baton_backend *be, bool on);
typedef struct {
    const char *name;  /* the shader variant, e.g. "matmul_f16_f32_b1_wr32_xs" */
    double secs;       /* device time in all the steps profiled */
    uint32_t groups;   /* groups of dispatches between barriers it closed */
} baton_vk_profile_entry;
/* Up to max entries, the longest first, and the steps profiled; returns how many (at most
 * BATON_SHADER_ENTRIES: one per shader variant and one for groups of copies alone). */
enum { BATON_SHADER_ENTRIES = 112 };
int baton_vk_profile_read(const baton_backend *be, int max, baton_vk_profile_entry *out,
                          uint32_t *steps);

/* The one-token matmul (matvec) configurations `baton bench --sweep` measures: their count
 * (configuration 0 is the GPUs' default; baton_vk_kernels_reset says more) and a short name of
 * each ("wr16 u8 xs": 16 rows per workgroup, 8 weight loads in flight per thread, x staged in
 * shared memory). */
int baton_vk_matvec_count(void);
const char *baton_vk_matvec_name(int config);
/* Whether configuration config can compute its product's input itself (baton_vk_fuse_set). */
bool baton_vk_matvec_fuses(int config);
/* Makes `config` the matvec of the backend's later steps, for every product (tuning's choices per
 * product set aside until baton_vk_kernels_reset; so too the batched and tensor-core
 * selections below for their kinds). Every configuration sums in the same
 * order, so results are bitwise the same. BATON_ERR_UNSUPPORTED: the device lacks the shared
 * memory or workgroup size it needs (the backend keeps its configuration). */
baton_status baton_vk_matvec_select(baton_backend *be, int config, baton_error *err);

/* Times the matmul the backend runs at `tokens` tokens (1 to max_tokens: the matvec, a batched
 * tier, or a tensor-core kind) alone, `reps` dispatches in a row with a barrier between
 * (timestamps), on the stage's first layer's four matrices (att.kvr, att.output, ffn.kr,
 * ffn.value: stacked as the engine runs them) and the head: secs[BATON_VK_PROFILE_MATRICES] the
 * seconds of one product of each (0: absent, the head beyond the rows of logits a pass holds, or
 * no timestamps). Overwrites the activations: call it between steps, never inside a sequence's
 * work that needs them (the slots' states are not touched). baton_vk_profile_shape: matrix i's
 * rows (stacked parts and their padding included) and columns, 0 when absent. */
enum { BATON_VK_PROFILE_MATRICES = 5 };
baton_status baton_vk_matmul_profile(baton_backend *be, int tokens, int reps, double *secs,
                                     baton_error *err);
void baton_vk_profile_shape(const baton_backend *be, int i, uint64_t *rows, uint64_t *cols);
const char *baton_vk_profile_name(int i);

/* The tensor-core matmul (shaders/matmul_coop.comp: GL_NV_cooperative_matrix 16x8x8 products,
 * activations split into fp16 hi + lo, fp32 sums), for every matrix and token count. The device
 * is set up for it where it has VK_NV_cooperative_matrix with the 16x8x8 fp16/fp32 product,
 * unless BATON_VK_COOPMAT=0. What runs, by BATON_VK_COOPMAT at backend creation:
 *   unset, "" or "auto": the backend's tuning chooses (BATON_VK_TUNE; baton_vk_tuning says
 *       what and why): once the default path is tuned it holds the tensor cores' results on
 *       made-up inputs to the default path's (within 1e-4 of each product's largest output),
 *       tunes their configurations, and runs every matmul on them when vk_tune_coop_wins
 *       (engine/vulkan/vk_kernels.h) finds them clearly faster; untuned, the default path;
 *   "1": the tensor cores from the start;  "0": never;
 *   "ready": set up, used only when baton_vk_coopmat_use asks.
 * "emulate", "emulate-ready" and "emulate-auto" do the same with its EMULATE variants (the same
 * sums in plain fp32) on any device: tests. Any other value is refused (BATON_ERR_ARG).
 * The two paths' results differ in the last bits, so the choice holds for the backend's life
 * (batch invariance holds on each); pin "0" or "1" where logits must be bitwise the same across
 * restarts or devices.
 * *ready: set up; *active: in use. Returns why it is not ready ("" when it is). */
const char *baton_vk_coopmat_state(const baton_backend *be, bool *ready, bool *active);
/* Switches it on or off for later steps; on builds its pipelines first (BATON_ERR_UNSUPPORTED
 * when not ready or a pipeline does not build: the backend then stays as it was). Its results
 * differ from the default path's (another order of sums), so switch only between sequences. */
baton_status baton_vk_coopmat_use(baton_backend *be, bool on, baton_error *err);

/* The batched matmul configurations the bench sweeps: their count, names, tokens per workgroup
 * (8, 32 or 64), and the choice of one for later steps it can serve (8: steps of 2 to 8 tokens;
 * 32: steps of more; 64: steps of more than 32). All sum alike: bitwise the same results. */
int baton_vk_batched_count(void);
const char *baton_vk_batched_name(int config);
int baton_vk_batched_tokens(int config);
/* Reading ahead: in a step of one sequence and one token, beside each dispatch before a matrix
 * product (before the barrier after it), a small kernel reads the next `mib` MiB of that
 * product's weights (at most two reads per product), so that they are in the device's cache
 * when it starts instead of the memory idling through a LayerNorm, WKV or a product's last
 * workgroups. Results never change (nothing reads what it reads). The backend starts with
 * BATON_VK_PREFETCH or tuning's choice (0: none); baton_vk_prefetch_set changes it for later
 * steps (BATON_ERR_ARG beyond 64). */
uint32_t baton_vk_prefetch_mib(const baton_backend *be);
baton_status baton_vk_prefetch_set(baton_backend *be, uint32_t mib, baton_error *err);
/* The LayerNorm kernels (ln_shift, layernorm) of a step of few tokens spread each token's
 * channels over several workgroups, each computing the row's statistics itself, for about this
 * many workgroups in all (32 unless set; 1 to 4096, BATON_ERR_ARG else). Results never change:
 * for the bench's sweep, which times other spreads on the device. */
uint32_t baton_vk_ln_spread(const baton_backend *be);
baton_status baton_vk_ln_spread_set(baton_backend *be, uint32_t workgroups, baton_error *err);
/* Fusing, in a step of one sequence and one token: with BATON_VK_FUSE_LN a layer's k/v/r product
 * and its FFN key/receptance product each compute their input (the LayerNorm of the residual
 * with the token shift) themselves while staging it, so the layer runs no LayerNorm dispatch;
 * with BATON_VK_FUSE_WKV its output product computes r * wkv the same way, so it runs no WKV
 * dispatch. Each is bitwise what the separate dispatch gives, and saves a barrier per dispatch
 * (the new state is saved beside a later product). Only where the matvec configuration a
 * product runs stages x in shared memory (an xs one: the GPUs' default) and on the fp32 path
 * (WKV: where the output matrix is one chunk); elsewhere the dispatch runs apart as before. The
 * backend starts with BATON_VK_FUSE or tuning's choice (none untuned); baton_vk_fuse_set
 * changes it for later steps. */
enum { BATON_VK_FUSE_LN = 1, BATON_VK_FUSE_WKV = 2 };
uint32_t baton_vk_fuse(const baton_backend *be);
void baton_vk_fuse_set(baton_backend *be, uint32_t flags);

/* Back to the configurations the backend started with: the kind of device's defaults, or what
 * its tuning chose (the tensor-core ones included). */
baton_status baton_vk_kernels_reset(baton_backend *be, baton_error *err);
baton_status baton_vk_batched_select(baton_backend *be, int config, baton_error *err);

/* Its configurations (vk_coop_configs): their count, names, whether one serves steps of up to 8
 * tokens (else larger steps), and the choice of one of each for later steps (BATON_ERR_ARG for
 * indices outside the table or a few-token slot given another; BATON_ERR_UNSUPPORTED when the
 * device cannot run one). Every pair sums in the same order: bitwise the same results. */
int baton_vk_coop_count(void);
const char *baton_vk_coop_name(int config);
bool baton_vk_coop_few(int config);
int baton_vk_coop_default(bool few); /* the default one (before any tuning) */
/* few for steps of up to 8 tokens, many for every larger one (the large tier's too) */
baton_status baton_vk_coop_select(baton_backend *be, int few, int many, baton_error *err);

/* Validation messages (warnings and errors) counted since the process started; 0 unless
 * BATON_VK_VALIDATION=1. */
uint32_t baton_vk_validation_messages(void);

/* The device's copy bandwidth for the bench, buffers of `bytes` copied `reps` times, timed with
 * timestamps: *bytes_per_s by vkCmdCopyBuffer (bytes copied per second; on NVIDIA the copy engine,
 * far below memory bandwidth), *shader_bytes_per_s (may be NULL) by a compute-shader copy,
 * counting bytes read plus written: the memory bandwidth kernels can reach. */
baton_status baton_vk_copy_bandwidth(int device_index, uint64_t bytes, int reps, double *bytes_per_s,
                                     double *shader_bytes_per_s, char *device_name, int name_size,
                                     baton_error *err);

#endif
