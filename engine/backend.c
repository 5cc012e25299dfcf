#include "backend.h"

#include <stdlib.h>

enum { SLOTS_MAX = 1 << 16, SEQS_MAX = 1 << 12, TOKENS_MAX = 1 << 20 };

baton_status baton_stage_config_check(const baton_model *m, const baton_stage_config *c,
                                      baton_error *err) {
    if (c->layer_begin < m->layer_begin || c->layer_end > m->layer_end ||
        c->layer_begin > c->layer_end)
        return baton_fail(err, BATON_ERR_ARG, "layers [%d, %d) are not within the loaded [%d, %d)",
                          c->layer_begin, c->layer_end, m->layer_begin, m->layer_end);
    if (c->with_embedding && (c->layer_begin != 0 || !m->has_embedding))
        return baton_fail(err, BATON_ERR_ARG,
                          "the embedding needs layer 0 first and a model loaded with it");
    if (c->with_head && (c->layer_end != m->n_layer || !m->has_head))
        return baton_fail(err, BATON_ERR_ARG,
                          "the head needs the last layer and a model loaded with it");
    if (c->n_slots < 1 || c->n_slots > SLOTS_MAX)
        return baton_fail(err, BATON_ERR_ARG, "n_slots %d is outside [1, %d]", c->n_slots,
                          SLOTS_MAX);
    if (c->max_seqs < 1 || c->max_seqs > SEQS_MAX)
        return baton_fail(err, BATON_ERR_ARG, "max_seqs %d is outside [1, %d]", c->max_seqs,
                          SEQS_MAX);
    if (c->max_tokens < c->max_seqs || c->max_tokens > TOKENS_MAX)
        return baton_fail(err, BATON_ERR_ARG, "max_tokens %d is outside [max_seqs, %d]",
                          c->max_tokens, TOKENS_MAX);
    return BATON_OK;
}

baton_status baton_step_check(const baton_backend *b, const baton_step *s, baton_error *err) {
    const baton_stage_config *c = &b->config;
    if (s->n_seqs < 1 || s->n_seqs > c->max_seqs)
        return baton_fail(err, BATON_ERR_ARG, "%d sequences in a step, limit %d", s->n_seqs,
                          c->max_seqs);
    int64_t total = 0;
    for (int i = 0; i < s->n_seqs; i++) {
        const baton_seq *q = &s->seqs[i];
        if (q->slot < 0 || q->slot >= c->n_slots)
            return baton_fail(err, BATON_ERR_ARG, "slot %d is outside [0, %d)", q->slot,
                              c->n_slots);
        for (int j = 0; j < i; j++)
            if (s->seqs[j].slot == q->slot)
                return baton_fail(err, BATON_ERR_ARG, "slot %d appears twice in a step", q->slot);
        if (q->n_tokens < 1)
            return baton_fail(err, BATON_ERR_ARG, "sequence %d has %d tokens", i, q->n_tokens);
        total += q->n_tokens;
    }
    if (total > c->max_tokens)
        return baton_fail(err, BATON_ERR_ARG, "%lld tokens in a step, limit %d", (long long)total,
                          c->max_tokens);
    if (c->with_embedding) {
        if (s->tokens == NULL) return baton_fail(err, BATON_ERR_ARG, "the step has no tokens");
        for (int64_t t = 0; t < total; t++)
            if (s->tokens[t] < 0 || s->tokens[t] >= b->model->n_vocab)
                return baton_fail(err, BATON_ERR_ARG, "token %d is outside [0, %d)", s->tokens[t],
                                  b->model->n_vocab);
    } else if (s->x_in == NULL) {
        return baton_fail(err, BATON_ERR_ARG, "the step has no hidden states in");
    }
    if (!c->with_head && (s->logits != NULL || s->sampling != NULL))
        return baton_fail(err, BATON_ERR_ARG, "logits or sampling asked of a stage without head");
    if (c->with_head && s->x_out != NULL)
        return baton_fail(err, BATON_ERR_ARG, "hidden states asked of the last stage");
    if (s->sampling != NULL) {
        if (s->tokens_out == NULL) return baton_fail(err, BATON_ERR_ARG, "sampling needs tokens_out");
        for (int i = 0; i < s->n_seqs; i++) {
            baton_status st = baton_sampling_check(&s->sampling[i], err);
            if (st != BATON_OK) return st;
        }
    }
    return BATON_OK;
}

void baton_state_init(float *state, int n_layers, int n_embd) {
    for (int l = 0; l < n_layers; l++) {
        for (int r = 0; r < BATON_STATE_ROWS; r++) {
            float v = r == BATON_ATT_PP ? BATON_PP_INIT : 0.0f;
            float *row = state + ((size_t)l * BATON_STATE_ROWS + (size_t)r) * (size_t)n_embd;
            for (int i = 0; i < n_embd; i++) row[i] = v;
        }
    }
}
