/* The backend behind `baton serve`: the plan, then one stage, several stages chained in this
 * process (one per device of --devices, or as --split cuts the layers over one device), or a
 * chain of `baton node`s (--nodes). Prints the plan on stdout. */
#ifndef BATON_SERVE_PIPELINE_H
#define BATON_SERVE_PIPELINE_H

#include "inference_service.h"
#include "pipe.h"
#include "plan.h"
#include "remote_backend.h"

typedef struct {
    const char *model_path;
    const char *devices;   /* embedded: "cpu", "cpu,cpu", "vulkan:0,vulkan:1" */
    const char *split;     /* "N,N,..." or NULL for auto */
    const char *nodes;     /* "host:port,..." or NULL: everything in this process */
    int n_slots, max_seqs, max_tokens;
    int step_timeout_ms, load_timeout_ms, connect_timeout_ms;
    rpc_limits limits;     /* of the channels to the nodes */
    void (*on_available)(void *user, bool available);
    void *user;
} serve_pipeline_args;

typedef struct {
    baton_model *model;        /* the whole model, or (with nodes) its shape only */
    baton_tensor_set *set;     /* with nodes: the coordinator's mapping, for the checksums */
    baton_backend *backend;    /* with nodes: the remote chain (the pipe steps it); else NULL */
    baton_pipe *pipe;          /* what the scheduler drives */
    baton_plan plan;
    baton_stage_info stages[BATON_PLAN_STAGES_MAX];
    char node_list[4096];      /* with nodes: a copy of --nodes cut at the commas */
} serve_pipeline;

baton_status serve_pipeline_open(const serve_pipeline_args *args, serve_pipeline *p,
                                 baton_error *err);

/* Frees the pipe, the backend, then the model; a zeroed p is a no-op. */
void serve_pipeline_close(serve_pipeline *p);

#endif
