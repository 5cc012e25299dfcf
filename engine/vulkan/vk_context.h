/* The Vulkan plumbing the engine stands on: one instance, one device with one compute queue, one
 * command buffer and fence (and a few command buffers kept for replay), buffers with their
 * memory, the compute pipelines of every shader variant, and descriptor sets cached by the
 * buffers they bind. Internal to engine/vulkan. */
#ifndef BATON_VK_CONTEXT_H
#define BATON_VK_CONTEXT_H

#include <stdbool.h>
#include <stdint.h>
#include <vulkan/vulkan.h>

#include "baton_shaders.h"
#include "status.h"
#include "vk_backend.h"

enum { VK_BINDINGS = 8 };              /* storage buffers in the one descriptor-set layout */
enum { VK_PUSH_BYTES = 128 };          /* the push-constant range every device offers */
enum { VK_DSET_CACHE = 4096 };         /* descriptor sets per context (hash table slots) */

typedef struct {
    VkBuffer buffer;
    VkDeviceMemory memory;
    VkDeviceSize size;
    void *mapped; /* host-visible buffers only */
} vk_buffer;

/* A binding: a buffer range. range 0 means "to the end". */
typedef struct {
    const vk_buffer *buf;
    VkDeviceSize offset, range;
} vk_bind;

typedef struct {
    uint64_t key[VK_BINDINGS * 3];
    VkDescriptorSet set;
    bool used;
} vk_dset_entry;

/* What a matrix is to a step (vk_matrix.role), so that each may have its own configuration of
 * each kind of matmul (vk_context.role_config): the shapes differ, and so may the fastest
 * kernel (a C-row product has a fifth of the row blocks of an (F + C)-row one). */
enum { VK_ROLE_NONE, VK_ROLE_ATT_KVR, VK_ROLE_ATT_OUTPUT, VK_ROLE_FFN_KR, VK_ROLE_FFN_VALUE,
       VK_ROLE_HEAD, VK_ROLES };
/* The kinds of matmul configuration a step chooses from by its token count and path: the
 * one-token matvec, the batched tiers (2 to 8, 9 to 32, more tokens), the tensor cores' few-
 * (up to 8), many- (9 to 64) and large (more) ones. */
enum { VK_KIND_MATVEC, VK_KIND_B8, VK_KIND_B32, VK_KIND_B64, VK_KIND_COOP_FEW, VK_KIND_COOP_MANY,
       VK_KIND_COOP_LARGE, VK_KINDS };

/* What BATON_VK_COOPMAT asks of the tensor-core path (vk_coop_mode_parse). */
typedef enum {
    VK_COOP_AUTO,  /* unset, "" or "auto": set up where the device has it; tuning decides */
    VK_COOP_OFF,   /* "0": the device is created without it */
    VK_COOP_ON,    /* "1": every matmul on it from the start */
    VK_COOP_READY, /* "ready": set up, used only when asked (baton_vk_coopmat_use) */
} vk_coop_mode;

/* Reads a BATON_VK_COOPMAT value (NULL: unset); "emulate", "emulate-ready" and "emulate-auto"
 * are ON, READY and AUTO on the EMULATE variants (*emulate), which any device runs. False for
 * anything else. */
bool vk_coop_mode_parse(const char *env, vk_coop_mode *mode, bool *emulate);

/* Profiling (baton_vk_profile): a timestamp before every barrier, so that the device time of each
 * group of dispatches between barriers adds up by shader. */
enum { VK_PROF_MAX = 1024 }; /* timestamps per command buffer (queries 2 onward) */
typedef struct {
    bool on;
    uint32_t n;                       /* timestamps written into the command buffer so far */
    int shader[VK_PROF_MAX];          /* the first shader dispatched before timestamp i (-1: none) */
    int first;                        /* the first shader dispatched since the last timestamp */
    double secs[BATON_SHADER_COUNT + 1];   /* [BATON_SHADER_COUNT]: groups with no dispatch */
    uint32_t groups[BATON_SHADER_COUNT + 1];
    uint32_t steps;                   /* steps run while on (the backend counts them) */
} vk_profile;

/* A command buffer recorded for a step of a given shape, submitted again for every later step
 * of that shape (the step's data lives in buffers the host fills before each submit). */
enum { VK_REPLAYS = 8, VK_REPLAY_KEY = 6 };
typedef struct {
    VkCommandBuffer cmd;
    uint64_t key[VK_REPLAY_KEY];
    uint64_t last_used;
    uint32_t gen;
    uint32_t n_dispatches, n_barriers;
    bool valid;
} vk_replay;

/* The matmul configurations a context runs by default (vk_kernels_reset): each kind's, and each
 * role's where it differs from its kind's (-1: the kind's). */
typedef struct {
    int matvec, mm8, mm32, mm64, coop_few, coop_many, coop_large;
    int role_config[VK_KINDS][VK_ROLES];
} vk_kernel_choice;

typedef struct {
    VkInstance instance;
    VkPhysicalDevice phys;
    baton_vk_device_info info;
    VkPhysicalDeviceMemoryProperties mem;
    VkDeviceSize storage_align; /* minStorageBufferOffsetAlignment */
    float timestamp_period_ns;
    VkDevice device;
    uint32_t queue_family;
    VkQueue queue;
    VkCommandPool pool;
    VkCommandBuffer cmd;  /* the buffer being recorded or submitted: cmd_once or a replay's */
    VkCommandBuffer cmd_once;
    vk_replay replays[VK_REPLAYS];
    uint64_t replay_clock;
    uint32_t replay_gen;  /* bumped whenever recorded commands may have gone stale */
    int replay_cur;       /* the replay entry being recorded (-1: none) */
    bool replaying;       /* ctx->cmd is a recorded buffer submitted again: every recording
                           * call (dispatch, barrier, copy, timestamp) does nothing */
    VkFence fence;
    VkQueryPool queries; /* 2 timestamps, then VK_PROF_MAX for profiling, when the queue has them */
    vk_profile prof;
    VkDescriptorSetLayout dset_layout;
    VkPipelineLayout pipe_layout;
    VkShaderModule modules[BATON_SHADER_COUNT];
    VkPipeline pipelines[BATON_SHADER_COUNT];
    VkDescriptorPool dpool;
    vk_dset_entry *dsets; /* [VK_DSET_CACHE] */
    int n_dsets;
    vk_buffer dummy;      /* binds where a shader's binding is unused */
    vk_buffer xsplit;     /* x split for the tensor cores' XG matmuls (vk_coop_xsplit_reserve) */
    VkDeviceSize xsplit_bytes; /* what the stage needs of it: made on the tensor-core path */
    uint64_t timeout_ns;
    uint32_t n_dispatches, n_barriers; /* recorded since the caller last zeroed them */
    int matvec;           /* the one-token matmul configuration (vk_matvec_configs) */
    int role_config[VK_KINDS][VK_ROLES]; /* each kind's configuration for a role's matrices
                                          * where tuning chose another (-1: the kind's own) */
    int mm8, mm32, mm64;  /* the batched ones (vk_batched_configs) for steps of 2 to 8, 9 to 32
                           * and more tokens */
    vk_coop_mode coop_mode; /* what BATON_VK_COOPMAT asked for */
    bool coopmat_ready;   /* the device runs matmul_coop.comp (set up for it) */
    bool coopmat;         /* every matmul on the tensor cores (BATON_VK_COOPMAT=1, or chosen) */
    bool coopmat_emulated;/* tests: matmul_coop.comp's EMULATE variants instead (any device) */
    int coop_few, coop_many, coop_large; /* its configurations (vk_coop_configs) for <= 8, 9 to
                                          * 64 and more tokens */
    vk_kernel_choice start; /* what vk_kernels_reset selects: the device kind's defaults, or
                             * what tuning chose */
    char coopmat_why[160];/* why coopmat_ready is false */
    bool lost;            /* a wait timed out or the device was lost: refuse further work */
} vk_context;

/* Records a reset of timestamps [first, first + n) (first >= 2, first + n <= 2 + VK_PROF_MAX)
 * for vk_timestamp, outside profiling; vk_timestamps_deltas reads timestamps after the submit
 * (any of the pool's, 0 and 1 included): out[i] the seconds from timestamp first + i to
 * first + i + 1, i < n - 1 (false: none to read). vk_elapsed_s and the profile read theirs
 * through it. */
void vk_timestamps_reset(vk_context *ctx, int first, int n);
bool vk_timestamps_deltas(vk_context *ctx, int first, int n, double *out);

/* Lists devices (same as baton_vk_devices_list) from an existing instance. */
void vk_probe_device(VkInstance instance, VkPhysicalDevice phys, int index,
                     baton_vk_device_info *info);

/* Instance, device (device_index -1: best), queue, command buffer, pipelines. */
baton_status vk_context_init(vk_context *ctx, int device_index, baton_error *err);
void vk_context_free(vk_context *ctx);
/* Every matmul on matmul_coop.comp (on) or back on the default variants (off). On needs
 * coopmat_ready and builds the pipelines of configurations coop_few and coop_many; false (err
 * filled when not NULL, and coopmat_ready cleared when a pipeline fails) when it cannot. */
bool vk_coopmat_use(vk_context *ctx, bool on, baton_error *err);
/* Builds the pipeline of a shader variant marked on_demand (the others are built by init);
 * nothing when it exists. */
baton_status vk_pipeline_ensure(vk_context *ctx, baton_shader_id shader, baton_error *err);

/* host_visible: mapped, coherent (and cached when the device offers it); else device-local. */
baton_status vk_buffer_create(vk_context *ctx, VkDeviceSize size, bool host_visible,
                              vk_buffer *out, baton_error *err);
void vk_buffer_destroy(vk_context *ctx, vk_buffer *buf);

/* Command recording into the context's one-time command buffer, then submit and wait (bounded). */
baton_status vk_begin(vk_context *ctx, baton_error *err);
/* The same for a command buffer kept for `key` (what the recording depends on beyond the
 * buffers' contents): *replay true when one recorded earlier for the same key is still valid,
 * and the caller then records nothing and submits it as it is (n_dispatches and n_barriers are
 * those it recorded). Otherwise the least recently used kept buffer is recorded anew, and kept
 * for the key once it has run. */
baton_status vk_begin_keyed(vk_context *ctx, const uint64_t key[VK_REPLAY_KEY], bool *replay,
                            baton_error *err);
/* Every kept command buffer is stale from now on (a pipeline choice or binding changed). */
void vk_replays_invalidate(vk_context *ctx);
baton_status vk_submit_wait(vk_context *ctx, baton_error *err);
void vk_dispatch(vk_context *ctx, baton_shader_id shader, const vk_bind *binds, int n_binds,
                 const void *push, uint32_t push_size, uint32_t gx, uint32_t gy, uint32_t gz);
/* Makes every earlier shader and transfer write visible to every later read or write. */
void vk_barrier(vk_context *ctx);
/* The same between dispatches only: every earlier shader write visible to later shaders. No
 * copy may be recorded on either side of it without a vk_barrier between (on NVIDIA copies run
 * on another engine, which a barrier naming transfers must wait for). */
void vk_barrier_compute(vk_context *ctx);
void vk_copy(vk_context *ctx, const vk_buffer *src, VkDeviceSize src_off, const vk_buffer *dst,
             VkDeviceSize dst_off, VkDeviceSize size);
/* Timestamp i (0 or 1) after all earlier work; vk_elapsed_s reads t1 - t0 after the wait. */
void vk_timestamp(vk_context *ctx, int i);
double vk_elapsed_s(vk_context *ctx);

/* Fails with the Vulkan result named, e.g. "vkAllocateMemory: VK_ERROR_OUT_OF_DEVICE_MEMORY". */
baton_status vk_fail(baton_error *err, VkResult r, const char *what);

#endif
