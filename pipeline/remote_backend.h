/* The coordinator's side of a distributed pipeline: a backend whose stages are baton.v1.Stage
 * services on nodes (`baton node`), chained node to node.
 *
 * A step goes to the first stage only; each stage forwards its hidden states to the next and the
 * last one samples, so the coordinator sends token ids and sampling parameters and gets token ids
 * back (per step: a small header out, n_seqs ids in). Slot resets ride on the next step.
 *
 * Faults: a step that fails or passes its deadline (step_timeout_ms) fails with
 * BATON_ERR_UNAVAILABLE and marks the pipeline down; so does a node that stops answering the
 * monitor's probes or comes back as a new process. While down every step fails at once and
 * on_available(false) has been called. A monitor thread retries: once every node answers, it
 * checks the model fingerprints again, reloads every stage (nodes that kept their layers keep
 * them), starts a new epoch and calls on_available(true). Slots reset before the new epoch are
 * stale: steps on them fail, so no stream ever continues on a state a node lost. */
#ifndef BATON_REMOTE_BACKEND_H
#define BATON_REMOTE_BACKEND_H

#include "backend.h"
#include "pipe.h"
#include "plan.h"
#include "rpc.h"
#include "tensor_set.h"

enum { BATON_REMOTE_NODES_MAX = 32 };

typedef struct {
    int n_nodes;
    const char *nodes[BATON_REMOTE_NODES_MAX]; /* host:port, outliving the pipeline */
    rpc_limits limits;
    int step_timeout_ms;   /* a step through the whole chain */
    int load_timeout_ms;   /* a stage's Load */
    int connect_timeout_ms;/* how long baton_remote_describe waits for every node */
    int probe_ms;          /* how often the monitor probes the nodes */
    void (*on_available)(void *user, bool available); /* from the monitor thread; may be NULL */
    void *user;
} baton_remote_config;

typedef struct baton_remote baton_remote;

baton_status baton_remote_new(const baton_remote_config *config, baton_remote **out,
                              baton_error *err);

/* Waits (at most wait_ms, polling) until every node answers Describe, checks that each has the
 * model whose header fingerprint is header and shape is that of model, and lists the nodes'
 * devices in node order for the plan. */
baton_status baton_remote_describe(baton_remote *r, const baton_model *model, uint64_t header,
                                   baton_plan_device *devices, int max_devices, int *n_devices,
                                   baton_error *err);

/* Loads every stage of plan with those limits while computing each stage's checksum from set
 * (the coordinator's own mapping; a thread per stage, read only during this call), refuses a
 * node whose loaded data differs, and starts the monitor. model (the shape) outlives r. Then
 * baton_remote_backend is usable. */
baton_status baton_remote_start(baton_remote *r, const baton_plan *plan, const baton_model *model,
                                const baton_tensor_set *set, int n_slots, int max_seqs,
                                int max_tokens, baton_error *err);

/* The pipeline as a backend (owned by r; its free frees r). */
baton_backend *baton_remote_backend(baton_remote *r);

/* The pipeline as a pipe with depth steps in flight (0: one per stage), each carried by its own
 * thread through the chain; the nodes report each stage's compute time per step. Freed with
 * baton_pipe_free before r; meanwhile the backend's own step is not used. */
baton_status baton_remote_pipe_new(baton_remote *r, int depth, baton_pipe **out,
                                   baton_error *err);

/* The backend name the node reported for stage i (after start). */
const char *baton_remote_stage_device(const baton_remote *r, int i);

/* Stops the monitor and frees; NULL is a no-op. Not while a step runs. */
void baton_remote_free(baton_remote *r);

#endif
