/* The plan: which layers each pipeline stage runs. Layers go to stages in proportion to what each
 * device can hold (its free memory minus the stage's fixed costs: embedding on the first stage,
 * head on the last, workspace), or as an explicit split says; every stage gets at least one layer.
 * A plan that does not fit is refused with a message saying by how much. */
#ifndef BATON_PLAN_H
#define BATON_PLAN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "model.h"
#include "status.h"

enum { BATON_PLAN_STAGES_MAX = 64 };

/* One device a stage can run on. */
typedef struct {
    char host[128];       /* "" in this process, else the node's host:port */
    char device[64];      /* device spec, "cpu", "vulkan:0" */
    int node_stage;       /* the stage's index on its node (0 in this process) */
    uint64_t free_bytes;  /* what the stage may use (a device shared by stages: its share) */
} baton_plan_device;

/* What a stage costs, from the model's shape and the serving limits. */
typedef struct {
    int n_layer;
    uint64_t layer_bytes;     /* weights of one layer */
    uint64_t slot_layer_bytes;/* state of one layer for every slot */
    uint64_t embedding_bytes; /* emb and ln0 */
    uint64_t head_bytes;      /* ln_out, head and the logits workspace */
    uint64_t workspace_bytes; /* activations of one step */
} baton_plan_costs;

typedef struct {
    int layer_begin, layer_end;
    bool with_embedding, with_head;
    uint64_t need_bytes;
    baton_plan_device device;
} baton_plan_stage;

typedef struct {
    int n_stages;
    baton_plan_stage stages[BATON_PLAN_STAGES_MAX];
} baton_plan;

/* Costs of a model of this shape with n_slots state slots and max_tokens tokens per step. */
baton_plan_costs baton_plan_costs_of(const baton_model *model, int n_slots, int max_seqs,
                                     int max_tokens);

/* Makes the plan over n_devices devices in chain order. split: NULL for auto, else
 * [n_devices] layer counts that must sum to n_layer. */
baton_status baton_plan_make(const baton_plan_costs *costs, const baton_plan_device *devices,
                             int n_devices, const int *split, baton_plan *out, baton_error *err);

/* Parses "N,N,..." into split; *n gets the count. */
baton_status baton_plan_parse_split(const char *text, int *split, int max, int *n,
                                    baton_error *err);

/* Writes the plan, one line per stage, each line starting with prefix. */
void baton_plan_print(const baton_plan *plan, const char *prefix, FILE *out);

/* How many of the plan's stages can compute at the same time. Stages on one GPU take turns, so
 * the stages on one Vulkan device of one host (the same host name, whatever the port) count once;
 * CPU stages, each its own thread, count each. More micro-batches in flight than this only make
 * every weight be read again per micro-batch. */
int baton_plan_parallel_stages(const baton_plan *plan);

/* Available RAM (MemAvailable), what a CPU stage may use; 0 when unknown. */
uint64_t baton_plan_ram_available(void);

#endif
