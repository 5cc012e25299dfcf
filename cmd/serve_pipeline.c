#include "serve_pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device_list.h"
#include "device_open.h"
#include "fingerprint.h"

static void stage_info_fill(serve_pipeline *p, int i, const char *device) {
    const baton_plan_stage *s = &p->plan.stages[i];
    baton_stage_info *si = &p->stages[i];
    si->layer_begin = s->layer_begin;
    si->layer_end = s->layer_end;
    si->with_embedding = s->with_embedding;
    si->with_head = s->with_head;
    char host[sizeof si->host]; /* through a copy: GCC cannot tell the two fields of p apart */
    snprintf(host, sizeof host, "%s", s->device.host);
    memcpy(si->host, host, sizeof host);
    snprintf(si->device, sizeof si->device, "%s", device);
}

static baton_status parse_split(const serve_pipeline_args *a, int *split, int *n_split,
                                baton_error *err) {
    *n_split = 0;
    if (a->split == NULL || strcmp(a->split, "auto") == 0) return BATON_OK;
    return baton_plan_parse_split(a->split, split, BATON_PLAN_STAGES_MAX, n_split, err);
}

/* Every stage in this process, on its device, chained in memory. */
static baton_status open_embedded(const serve_pipeline_args *a, serve_pipeline *p,
                                  baton_error *err) {
    char specs[DEVICE_LIST_MAX][DEVICE_SPEC_MAX];
    int n_devices = 0, split[BATON_PLAN_STAGES_MAX], n_split = 0;
    if (!device_list_parse(a->devices, specs, DEVICE_LIST_MAX, &n_devices))
        return baton_fail(err, BATON_ERR_ARG, "--devices '%s': expected cpu, vulkan or vulkan:N, "
                          "comma-separated", a->devices);
    baton_status st = parse_split(a, split, &n_split, err);
    if (st != BATON_OK) return st;
    if (n_split > 0 && n_devices > 1 && n_split != n_devices)
        return baton_fail(err, BATON_ERR_ARG, "--split has %d stages for %d devices", n_split,
                          n_devices);
    int n = n_split > 0 ? n_split : n_devices;
    bool all_cpu = true;
    for (int i = 0; i < n_devices; i++) all_cpu = all_cpu && strcmp(specs[i], "cpu") == 0;
    baton_model_options mopt = {.prefetch = all_cpu};
    st = baton_model_load(a->model_path, &mopt, &p->model, err);
    if (st != BATON_OK) return st;

    /* Stages on one device share what it holds. */
    baton_plan_device devices[BATON_PLAN_STAGES_MAX];
    for (int i = 0; i < n; i++) {
        const char *spec = specs[n_devices == 1 ? 0 : i];
        int sharing = 0;
        for (int k = 0; k < n; k++) sharing += strcmp(specs[n_devices == 1 ? 0 : k], spec) == 0;
        memset(&devices[i], 0, sizeof devices[i]);
        snprintf(devices[i].device, sizeof devices[i].device, "%.31s", spec);
        devices[i].free_bytes = device_free_bytes(spec) / (uint64_t)sharing;
    }
    baton_plan_costs costs = baton_plan_costs_of(p->model, a->n_slots, a->max_seqs, a->max_tokens);
    st = baton_plan_make(&costs, devices, n, n_split > 0 ? split : NULL, &p->plan, err);
    if (st != BATON_OK) return st;
    baton_plan_print(&p->plan, "baton serve: ", stdout);

    baton_backend *stages[BATON_PLAN_STAGES_MAX];
    int opened = 0;
    for (; opened < n; opened++) {
        const baton_plan_stage *s = &p->plan.stages[opened];
        baton_stage_config config = {.layer_begin = s->layer_begin, .layer_end = s->layer_end,
                                     .with_embedding = s->with_embedding,
                                     .with_head = s->with_head, .n_slots = a->n_slots,
                                     .max_seqs = a->max_seqs, .max_tokens = a->max_tokens};
        st = device_backend_open(s->device.device, p->model, &config, &stages[opened], err);
        if (st != BATON_OK) break;
        stage_info_fill(p, opened, stages[opened]->name);
    }
    /* A thread per stage, one micro-batch in flight per stage. */
    if (st == BATON_OK) st = baton_pipe_local_new(stages, n, 0, &p->pipe, err);
    if (st != BATON_OK)
        for (int i = 0; i < opened; i++) baton_backend_free(stages[i]);
    return st;
}

/* A chain of nodes; this process keeps only the model's shape and its own mapping. */
static baton_status open_nodes(const serve_pipeline_args *a, serve_pipeline *p, baton_error *err) {
    int split[BATON_PLAN_STAGES_MAX], n_split = 0;
    baton_status st = parse_split(a, split, &n_split, err);
    if (st != BATON_OK) return st;
    baton_remote_config rc = {.limits = a->limits, .step_timeout_ms = a->step_timeout_ms,
                              .load_timeout_ms = a->load_timeout_ms,
                              .connect_timeout_ms = a->connect_timeout_ms, .probe_ms = 500,
                              .on_available = a->on_available, .user = a->user};
    if (strlen(a->nodes) >= sizeof p->node_list)
        return baton_fail(err, BATON_ERR_ARG, "--nodes is too long");
    snprintf(p->node_list, sizeof p->node_list, "%s", a->nodes);
    for (char *save = NULL, *t = strtok_r(p->node_list, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save)) {
        if (rc.n_nodes == BATON_REMOTE_NODES_MAX)
            return baton_fail(err, BATON_ERR_ARG, "--nodes: more than %d", BATON_REMOTE_NODES_MAX);
        rc.nodes[rc.n_nodes++] = t;
    }
    if (rc.n_nodes == 0) return baton_fail(err, BATON_ERR_ARG, "--nodes names no node");

    baton_model_options shape = {.layer_begin = 0, .layer_end = 1, .skip_embedding = true,
                                 .skip_head = true};
    st = baton_model_load(a->model_path, &shape, &p->model, err);
    if (st == BATON_OK) st = baton_tensor_set_open(a->model_path, &p->set, err);
    if (st != BATON_OK) return st;
    baton_remote *r = NULL;
    st = baton_remote_new(&rc, &r, err);
    if (st != BATON_OK) return st;
    baton_plan_device devices[BATON_PLAN_STAGES_MAX];
    int n_devices = 0;
    st = baton_remote_describe(r, p->model, baton_fingerprint_header(p->set), devices,
                               BATON_PLAN_STAGES_MAX, &n_devices, err);
    if (st == BATON_OK && n_split > 0 && n_split != n_devices)
        st = baton_fail(err, BATON_ERR_ARG, "--split has %d stages, the nodes serve %d", n_split,
                        n_devices);
    baton_plan_costs costs = baton_plan_costs_of(p->model, a->n_slots, a->max_seqs, a->max_tokens);
    costs.n_layer = p->model->n_layer;
    if (st == BATON_OK)
        st = baton_plan_make(&costs, devices, n_devices, n_split > 0 ? split : NULL, &p->plan, err);
    if (st == BATON_OK) {
        baton_plan_print(&p->plan, "baton serve: ", stdout);
        fflush(stdout);
        st = baton_remote_start(r, &p->plan, p->model, p->set, a->n_slots, a->max_seqs,
                                a->max_tokens, err);
    }
    if (st != BATON_OK) {
        baton_remote_free(r);
        return st;
    }
    for (int i = 0; i < p->plan.n_stages; i++) stage_info_fill(p, i, baton_remote_stage_device(r, i));
    p->backend = baton_remote_backend(r);
    return baton_remote_pipe_new(r, 0, &p->pipe, err);
}

baton_status serve_pipeline_open(const serve_pipeline_args *a, serve_pipeline *p,
                                 baton_error *err) {
    memset(p, 0, sizeof *p);
    baton_status st = a->nodes != NULL ? open_nodes(a, p, err) : open_embedded(a, p, err);
    if (st != BATON_OK) serve_pipeline_close(p);
    return st;
}

void serve_pipeline_close(serve_pipeline *p) {
    baton_pipe_free(p->pipe);
    p->pipe = NULL;
    baton_backend_free(p->backend);
    baton_tensor_set_free(p->set);
    baton_model_free(p->model);
    p->backend = NULL;
    p->set = NULL;
    p->model = NULL;
}
