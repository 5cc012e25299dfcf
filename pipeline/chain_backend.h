/* Several stage backends in one process, run one after the other as one backend: the embedded
 * pipeline of `baton serve` without --nodes. Stage i's hidden states go to stage i+1 through a
 * buffer in memory; nothing crosses a socket. The scheduler drives it like any backend. */
#ifndef BATON_CHAIN_BACKEND_H
#define BATON_CHAIN_BACKEND_H

#include "backend.h"

/* The config of stages[0..n) run as one: their layers end to end, the embedding of the first and
 * the head of the last, the smallest of their slot and step limits. BATON_ERR_ARG when a stage
 * does not continue the one before it. */
baton_status baton_chain_config(baton_backend *const *stages, int n, baton_stage_config *out,
                                baton_error *err);

/* Chains stages[0..n) (consecutive layer ranges, the first with embedding, the last with head).
 * On success the chain owns the stages (and frees them); on failure the caller keeps them. */
baton_status baton_chain_backend_new(baton_backend **stages, int n, baton_backend **out,
                                     baton_error *err);

#endif
