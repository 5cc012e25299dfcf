#include "chain_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CHAIN_STAGES_MAX = 64 };

typedef struct {
    baton_backend base;
    baton_backend *stages[CHAIN_STAGES_MAX];
    int n;
    float *x[2];        /* [max_tokens][n_embd] each: a stage's output, the next one's input */
    char name[256];
} chain_backend;

static baton_status chain_step(baton_backend *b, const baton_step *step, baton_error *err) {
    chain_backend *c = (chain_backend *)b;
    baton_status st = baton_step_check(b, step, err);
    if (st != BATON_OK) return st;
    for (int i = 0; i < c->n; i++) {
        baton_step s = {.n_seqs = step->n_seqs, .seqs = step->seqs};
        if (i == 0) s.tokens = step->tokens;
        else s.x_in = c->x[(i - 1) % 2];
        if (i < c->n - 1) {
            s.x_out = c->x[i % 2];
        } else {
            s.logits = step->logits;
            s.logits_all_tokens = step->logits_all_tokens;
            s.sampling = step->sampling;
            s.tokens_out = step->tokens_out;
            s.x_out = step->x_out;
        }
        st = baton_backend_step(c->stages[i], &s, err);
        if (st != BATON_OK) {
            baton_error_prefix(err, "stage %d", i);
            return st;
        }
    }
    return BATON_OK;
}

static baton_status chain_slot_reset(baton_backend *b, int slot, baton_error *err) {
    chain_backend *c = (chain_backend *)b;
    for (int i = 0; i < c->n; i++) {
        baton_status st = c->stages[i]->ops->slot_reset(c->stages[i], slot, err);
        if (st != BATON_OK) return st;
    }
    return BATON_OK;
}

/* The chain's state is the stages' states one after the other, layer order being stage order. */
static size_t stage_state_floats(const baton_backend *s) {
    return (size_t)(s->config.layer_end - s->config.layer_begin) * BATON_STATE_ROWS *
           (size_t)s->model->n_embd;
}

static baton_status chain_slot_read(baton_backend *b, int slot, float *state, baton_error *err) {
    chain_backend *c = (chain_backend *)b;
    for (int i = 0; i < c->n; i++) {
        baton_status st = c->stages[i]->ops->slot_read(c->stages[i], slot, state, err);
        if (st != BATON_OK) return st;
        state += stage_state_floats(c->stages[i]);
    }
    return BATON_OK;
}

static baton_status chain_slot_write(baton_backend *b, int slot, const float *state,
                                     baton_error *err) {
    chain_backend *c = (chain_backend *)b;
    for (int i = 0; i < c->n; i++) {
        baton_status st = c->stages[i]->ops->slot_write(c->stages[i], slot, state, err);
        if (st != BATON_OK) return st;
        state += stage_state_floats(c->stages[i]);
    }
    return BATON_OK;
}

static void chain_free(baton_backend *b) {
    chain_backend *c = (chain_backend *)b;
    for (int i = 0; i < c->n; i++) baton_backend_free(c->stages[i]);
    free(c->x[0]);
    free(c->x[1]);
    free(c);
}

static const struct baton_backend_ops chain_ops = {
    .step = chain_step, .slot_reset = chain_slot_reset, .slot_read = chain_slot_read,
    .slot_write = chain_slot_write, .free = chain_free,
};

static int min_int(int a, int b) {
    return a < b ? a : b;
}

baton_status baton_chain_config(baton_backend *const *stages, int n, baton_stage_config *out,
                                baton_error *err) {
    baton_stage_config cfg = stages[0]->config;
    for (int i = 1; i < n; i++) {
        const baton_stage_config *s = &stages[i]->config;
        if (s->layer_begin != cfg.layer_end || s->with_embedding ||
            stages[i]->model->n_embd != stages[0]->model->n_embd)
            return baton_fail(err, BATON_ERR_ARG, "stage %d does not continue stage %d", i, i - 1);
        cfg.layer_end = s->layer_end;
        cfg.with_head = s->with_head;
        cfg.n_slots = min_int(cfg.n_slots, s->n_slots);
        cfg.max_seqs = min_int(cfg.max_seqs, s->max_seqs);
        cfg.max_tokens = min_int(cfg.max_tokens, s->max_tokens);
    }
    *out = cfg;
    return BATON_OK;
}

baton_status baton_chain_backend_new(baton_backend **stages, int n, baton_backend **out,
                                     baton_error *err) {
    *out = NULL;
    if (n < 1 || n > CHAIN_STAGES_MAX)
        return baton_fail(err, BATON_ERR_ARG, "%d stages, expected 1 to %d", n, CHAIN_STAGES_MAX);
    baton_stage_config cfg;
    baton_status st = baton_chain_config(stages, n, &cfg, err);
    if (st != BATON_OK) return st;
    chain_backend *c = calloc(1, sizeof *c);
    if (c == NULL) return baton_fail(err, BATON_ERR_NOMEM, "out of memory for the chain");
    size_t x_floats = (size_t)cfg.max_tokens * (size_t)stages[0]->model->n_embd;
    c->x[0] = malloc(x_floats * sizeof(float));
    c->x[1] = malloc(x_floats * sizeof(float));
    if (c->x[0] == NULL || c->x[1] == NULL) {
        free(c->x[0]);
        free(c->x[1]);
        free(c);
        return baton_fail(err, BATON_ERR_NOMEM, "out of memory for the chain's hidden states");
    }
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        c->stages[i] = stages[i];
        int k = snprintf(c->name + at, sizeof c->name - at, "%s%s", i ? " | " : "", stages[i]->name);
        if (k > 0) at = at + (size_t)k < sizeof c->name ? at + (size_t)k : sizeof c->name - 1;
    }
    c->n = n;
    c->base.ops = &chain_ops;
    c->base.name = c->name;
    c->base.model = stages[0]->model;
    c->base.config = cfg;
    *out = &c->base;
    return BATON_OK;
}
