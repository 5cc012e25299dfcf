/* A compute backend runs one pipeline stage: a range of layers of a model, optionally with the
 * embedding in front and the head behind, over a fixed set of state slots.
 *
 * One step advances several sequences at once; sequence i advances seqs[i].n_tokens tokens (1 for
 * decode, more for prefill) on the state in slot seqs[i].slot. Inputs and outputs are laid out
 * sequence after sequence, token after token. Both the CPU reference and the Vulkan engine
 * implement this contract, so the command line, the pipeline and the tests drive either the same
 * way. Not thread-safe: one caller at a time per backend.
 *
 * State slot layout (also what slot_read and slot_write exchange): [n_layers][5][n_embd] float32,
 * per layer att_xx, att_aa, att_bb, att_pp, ffn_xx, for the stage's layers only. A fresh slot
 * holds zeros except att_pp = -1e30. */
#ifndef BATON_BACKEND_H
#define BATON_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "model.h"
#include "sampler.h"
#include "status.h"

enum { BATON_STATE_ROWS = 5 };
enum { BATON_ATT_XX = 0, BATON_ATT_AA = 1, BATON_ATT_BB = 2, BATON_ATT_PP = 3, BATON_FFN_XX = 4 };
#define BATON_PP_INIT (-1e30f)

typedef struct {
    int layer_begin, layer_end; /* [begin, end) within the model's loaded layers */
    bool with_embedding;        /* tokens in; needs layer_begin == 0 and the model's embedding */
    bool with_head;             /* logits out; needs layer_end == n_layer and the model's head */
    int n_slots;                /* state slots, >= 1 */
    int max_seqs;               /* sequences per step, >= 1 */
    int max_tokens;             /* tokens per step summed over sequences, >= max_seqs */
} baton_stage_config;

typedef struct {
    int32_t slot;     /* 0 <= slot < n_slots; a slot appears at most once per step */
    int32_t n_tokens; /* >= 1 */
} baton_seq;

typedef struct {
    int n_seqs;
    const baton_seq *seqs;     /* [n_seqs] */
    const int32_t *tokens;     /* with_embedding: [total tokens] ids < n_vocab */
    const float *x_in;         /* otherwise: [total tokens][n_embd] hidden states */
    float *x_out;              /* without head: [total tokens][n_embd] out (NULL: not wanted) */
    float *logits;             /* with head: [rows][n_vocab] out (NULL: not wanted) */
    bool logits_all_tokens;    /* rows = total tokens; otherwise rows = n_seqs (last token each) */
    const baton_sampling *sampling; /* with head: [n_seqs] (NULL: no sampling) */
    int32_t *tokens_out;       /* with sampling: [n_seqs] the chosen tokens, counted in the slot */
} baton_step;

typedef struct baton_backend baton_backend;

struct baton_backend_ops {
    /* Advances the sequences of step; on error the slots of that step are in an unknown state. */
    baton_status (*step)(baton_backend *backend, const baton_step *step, baton_error *err);
    /* Makes the slot fresh: initial state and no generated-token counts. */
    baton_status (*slot_reset)(baton_backend *backend, int slot, baton_error *err);
    baton_status (*slot_read)(baton_backend *backend, int slot, float *state, baton_error *err);
    baton_status (*slot_write)(baton_backend *backend, int slot, const float *state,
                               baton_error *err);
    void (*free)(baton_backend *backend);
};

struct baton_backend {
    const struct baton_backend_ops *ops;
    const char *name;          /* "cpu", "vulkan:0 (llvmpipe ...)" */
    const baton_model *model;  /* not owned; outlives the backend */
    baton_stage_config config;
};

/* Checks config against the model (ranges, flags, limits). */
baton_status baton_stage_config_check(const baton_model *model, const baton_stage_config *config,
                                      baton_error *err);
/* Checks a step against the backend's config (slot range and uniqueness, token counts, token ids,
 * which buffers are present). Backends call it first. */
baton_status baton_step_check(const baton_backend *backend, const baton_step *step,
                              baton_error *err);

/* Fills a fresh state for n_layers layers. */
void baton_state_init(float *state, int n_layers, int n_embd);

static inline baton_status baton_backend_step(baton_backend *b, const baton_step *s, baton_error *e) {
    return b->ops->step(b, s, e);
}
static inline void baton_backend_free(baton_backend *b) {
    if (b != NULL) b->ops->free(b);
}

/* The CPU reference backend (engine/cpu_backend.c), on BATON_CPU_THREADS threads (unset: one
 * per online processor, at most 64). Its results do not depend on the thread count. */
baton_status baton_cpu_backend_new(const baton_model *model, const baton_stage_config *config,
                                   baton_backend **out, baton_error *err);
/* The same on `threads` threads (1 to 256). */
baton_status baton_cpu_backend_new_threads(const baton_model *model,
                                           const baton_stage_config *config, int threads,
                                           baton_backend **out, baton_error *err);

/* Wraps inner in a backend that sleeps ms (0..60000) before each step: a stage of fixed compute
 * time, for tests and benches of pipelining. On success the wrapper owns inner. */
baton_status baton_delay_backend_new(baton_backend *inner, int ms, baton_backend **out,
                                     baton_error *err);

#endif
