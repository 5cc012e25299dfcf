#include "remote_backend.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "baton/v1/stage.pb-c.h"
#include "fingerprint.h"
#include "rpc_client.h"

enum { PROBE_TIMEOUT_MS = 1000, DESCRIBE_POLL_MS = 100, TARGET_MAX = 128, WHY_MAX = 1024 };

typedef struct {
    char target[TARGET_MAX];
    rpc_channel *channel;
    uint64_t instance;     /* from the Describe before the last load */
} node;

/* What one step in flight needs: [max_seqs] each. */
typedef struct {
    int32_t *slots, *seq_tokens, *resets;
    Baton__V1__StepSampling *sampling;
    Baton__V1__StepSampling **sampling_ptrs;
    double stage_ms[BATON_PLAN_STAGES_MAX]; /* what the nodes reported for the last step */
    int n_stage_ms;
} step_bufs;

static bool step_bufs_alloc(step_bufs *b, int max_seqs) {
    size_t m = (size_t)max_seqs;
    b->slots = calloc(m, sizeof *b->slots);
    b->seq_tokens = calloc(m, sizeof *b->seq_tokens);
    b->resets = calloc(m, sizeof *b->resets);
    b->sampling = calloc(m, sizeof *b->sampling);
    b->sampling_ptrs = calloc(m, sizeof *b->sampling_ptrs);
    return b->slots != NULL && b->seq_tokens != NULL && b->resets != NULL && b->sampling != NULL &&
           b->sampling_ptrs != NULL;
}

static void step_bufs_free(step_bufs *b) {
    free(b->slots);
    free(b->seq_tokens);
    free(b->resets);
    free(b->sampling);
    free(b->sampling_ptrs);
    memset(b, 0, sizeof *b);
}

typedef struct {
    int node;              /* index into nodes */
    baton_plan_stage plan;
    uint64_t checksum;     /* what the coordinator's copy holds for this range */
    char device[128];      /* the backend's name on the node */
} remote_stage;

struct baton_remote {
    baton_backend base;
    baton_remote_config cfg;
    node nodes[BATON_REMOTE_NODES_MAX];
    remote_stage stages[BATON_PLAN_STAGES_MAX];
    int n_stages;
    const baton_model *model;
    uint64_t header;
    step_bufs sync_bufs;   /* of the backend's own step */

    /* Read-held by each step for its whole call (several at once through the pipe), written by
     * the monitor while it reloads; a step that cannot take it fails at once rather than wait
     * for a reload. Writers first, so a reload is not starved by steps. Taken before mu. */
    pthread_rwlock_t step_lock;
    pthread_mutex_t mu;    /* guards what follows */
    uint64_t step_id;
    pthread_cond_t cond;
    bool up, stopping;
    uint64_t epoch;
    uint64_t *slot_epoch;  /* [n_slots] the epoch each slot was last reset in */
    bool *pending_reset;   /* [n_slots] reset to send with the next step */
    char down_reason[WHY_MAX];
    pthread_t monitor;
    bool monitor_started;
};

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Marks the pipeline down (once) and says why. Any thread, not holding mu. */
static void mark_down(baton_remote *r, const char *why) {
    pthread_mutex_lock(&r->mu);
    bool was_up = r->up;
    r->up = false;
    if (was_up) snprintf(r->down_reason, sizeof r->down_reason, "%s", why);
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);
    if (was_up) {
        fprintf(stderr, "baton serve: pipeline down: %s\n", why);
        if (r->cfg.on_available != NULL) r->cfg.on_available(r->cfg.user, false);
    }
}

/* ---- Describe and Load ---- */

/* Asks node i for its Describe and checks the model; false with why otherwise. refused is set
 * when the node answered with another model (not worth waiting for). */
static bool node_describe(baton_remote *r, int i, Baton__V1__DescribeResponse **out, bool *refused,
                          char *why, size_t n) {
    Baton__V1__DescribeRequest req = BATON__V1__DESCRIBE_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    rpc_status rs;
    *out = NULL;
    *refused = false;
    if (!rpc_call_unary(r->nodes[i].channel, "/baton.v1.Stage/Describe", &req.base,
                        &baton__v1__describe_response__descriptor, PROBE_TIMEOUT_MS, &resp, &rs)) {
        snprintf(why, n, "node %s does not answer: %s: %.300s", r->nodes[i].target,
                 rpc_status_name(rs.code), rs.message);
        return false;
    }
    Baton__V1__DescribeResponse *d = (Baton__V1__DescribeResponse *)resp;
    const baton_model *m = r->model;
    if (d->header_fingerprint != r->header || d->n_layer != (uint32_t)m->n_layer ||
        d->n_embd != (uint32_t)m->n_embd || d->n_vocab != (uint32_t)m->n_vocab) {
        snprintf(why, n,
                 "node %s has a different model (header fingerprint %016llx, %u layers, n_embd %u; "
                 "ours %016llx, %d layers, n_embd %d)",
                 r->nodes[i].target, (unsigned long long)d->header_fingerprint, d->n_layer,
                 d->n_embd, (unsigned long long)r->header, m->n_layer, m->n_embd);
        protobuf_c_message_free_unpacked(resp, NULL);
        *refused = true;
        return false;
    }
    *out = d;
    return true;
}

/* A fresh channel: one that failed may sit in gRPC's reconnect backoff for seconds. */
static bool node_reconnect(baton_remote *r, int i, char *why, size_t n) {
    rpc_channel_free(r->nodes[i].channel);
    r->nodes[i].channel = NULL;
    baton_error err = {0};
    if (rpc_channel_open(r->nodes[i].target, &r->cfg.limits, &r->nodes[i].channel, &err) == BATON_OK)
        return true;
    snprintf(why, n, "%s", err.msg);
    return false;
}

typedef struct {
    baton_remote *r;
    int i;
    uint64_t epoch;
    bool ok;
    uint64_t checksum;     /* what the node loaded (when ok) */
    char why[WHY_MAX];
    char device[128];
} load_job;

static void *load_stage(void *arg) {
    load_job *j = arg;
    baton_remote *r = j->r;
    const remote_stage *s = &r->stages[j->i];
    const remote_stage *next = j->i + 1 < r->n_stages ? &r->stages[j->i + 1] : NULL;
    Baton__V1__LoadRequest req = BATON__V1__LOAD_REQUEST__INIT;
    req.stage = (uint32_t)s->plan.device.node_stage;
    req.epoch = j->epoch;
    req.layer_begin = (uint32_t)s->plan.layer_begin;
    req.layer_end = (uint32_t)s->plan.layer_end;
    req.with_embedding = s->plan.with_embedding;
    req.with_head = s->plan.with_head;
    req.n_slots = (uint32_t)r->base.config.n_slots;
    req.max_seqs = (uint32_t)r->base.config.max_seqs;
    req.max_tokens = (uint32_t)r->base.config.max_tokens;
    req.next_target = next != NULL ? r->nodes[next->node].target : "";
    req.next_stage = next != NULL ? (uint32_t)next->plan.device.node_stage : 0;
    req.next_same_node = next != NULL && next->node == s->node;
    ProtobufCMessage *resp = NULL;
    rpc_status rs;
    const char *target = r->nodes[s->node].target;
    if (!rpc_call_unary(r->nodes[s->node].channel, "/baton.v1.Stage/Load", &req.base,
                        &baton__v1__load_response__descriptor, r->cfg.load_timeout_ms, &resp, &rs)) {
        snprintf(j->why, sizeof j->why, "stage %d at %s: Load: %s: %.300s", j->i, target,
                 rpc_status_name(rs.code), rs.message);
        return NULL;
    }
    Baton__V1__LoadResponse *l = (Baton__V1__LoadResponse *)resp;
    if (l->header_fingerprint != r->header) {
        snprintf(j->why, sizeof j->why, "stage %d at %s loaded another model (header fingerprint "
                 "%016llx, ours %016llx)", j->i, target,
                 (unsigned long long)l->header_fingerprint, (unsigned long long)r->header);
    } else {
        snprintf(j->device, sizeof j->device, "%s", l->device);
        j->checksum = l->checksum;
        j->ok = true;
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    return NULL;
}

/* The coordinator's checksum of a stage's range, from its own copy of the model file. */
typedef struct {
    const baton_tensor_set *set;
    remote_stage *s;
} hash_job;

static void *hash_stage(void *arg) {
    hash_job *h = arg;
    const baton_plan_stage *p = &h->s->plan;
    h->s->checksum = baton_fingerprint_range(h->set, p->layer_begin, p->layer_end,
                                             p->with_embedding, p->with_head);
    return NULL;
}

/* Loads every stage at once (a node loads from its own disk, so they overlap). With set (the
 * first load), the coordinator reads its own copy of each stage's range meanwhile, a thread per
 * stage, for the checksums every load is compared with: the start takes the longer of the two,
 * not their sum (reading 28 GB costs seconds to minutes). */
static bool load_all(baton_remote *r, uint64_t epoch, const baton_tensor_set *set, char *why,
                     size_t n) {
    load_job jobs[BATON_PLAN_STAGES_MAX];
    hash_job hashes[BATON_PLAN_STAGES_MAX];
    pthread_t threads[BATON_PLAN_STAGES_MAX], hashers[BATON_PLAN_STAGES_MAX];
    bool started[BATON_PLAN_STAGES_MAX], hashing[BATON_PLAN_STAGES_MAX];
    for (int i = 0; i < r->n_stages; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].r = r;
        jobs[i].i = i;
        jobs[i].epoch = epoch;
        started[i] = pthread_create(&threads[i], NULL, load_stage, &jobs[i]) == 0;
        if (!started[i]) load_stage(&jobs[i]);
    }
    for (int i = 0; i < r->n_stages; i++) {
        hashing[i] = false;
        if (set == NULL) continue;
        hashes[i] = (hash_job){.set = set, .s = &r->stages[i]};
        hashing[i] = pthread_create(&hashers[i], NULL, hash_stage, &hashes[i]) == 0;
        if (!hashing[i]) hash_stage(&hashes[i]);
    }
    bool ok = true;
    for (int i = 0; i < r->n_stages; i++) {
        if (started[i]) pthread_join(threads[i], NULL);
        if (hashing[i]) pthread_join(hashers[i], NULL);
        const remote_stage *s = &r->stages[i];
        if (jobs[i].ok && jobs[i].checksum != s->checksum) {
            snprintf(jobs[i].why, sizeof jobs[i].why,
                     "stage %d at %s loaded different data for layers [%d, %d): checksum %016llx, "
                     "ours %016llx (not the same model file)",
                     i, r->nodes[s->node].target, s->plan.layer_begin, s->plan.layer_end,
                     (unsigned long long)jobs[i].checksum, (unsigned long long)s->checksum);
            jobs[i].ok = false;
        }
        if (!jobs[i].ok && ok) {
            snprintf(why, n, "%s", jobs[i].why);
            ok = false;
        }
    }
    if (ok)
        for (int i = 0; i < r->n_stages; i++)
            snprintf(r->stages[i].device, sizeof r->stages[i].device, "%s", jobs[i].device);
    return ok;
}

/* Describes every node on fresh channels and reloads every stage in a new epoch. Holding
 * step_lock for writing. */
static bool restore(baton_remote *r, char *why, size_t n) {
    uint64_t instances[BATON_REMOTE_NODES_MAX];
    for (int i = 0; i < r->cfg.n_nodes; i++) {
        Baton__V1__DescribeResponse *d = NULL;
        bool refused;
        if (!node_reconnect(r, i, why, n) || !node_describe(r, i, &d, &refused, why, n))
            return false;
        instances[i] = d->instance;
        protobuf_c_message_free_unpacked(&d->base, NULL);
    }
    pthread_mutex_lock(&r->mu);
    uint64_t epoch = r->epoch + 1;
    pthread_mutex_unlock(&r->mu);
    if (!load_all(r, epoch, NULL, why, n)) return false;
    for (int i = 0; i < r->cfg.n_nodes; i++) r->nodes[i].instance = instances[i];
    pthread_mutex_lock(&r->mu);
    r->epoch = epoch;
    memset(r->pending_reset, 0, (size_t)r->base.config.n_slots * sizeof *r->pending_reset);
    r->up = !r->stopping;
    pthread_mutex_unlock(&r->mu);
    return true;
}

/* ---- the monitor ---- */

static void *monitor_thread(void *arg) {
    baton_remote *r = arg;
    char last_why[WHY_MAX] = "";
    for (;;) {
        pthread_mutex_lock(&r->mu);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)r->cfg.probe_ms * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        if (!r->stopping) pthread_cond_timedwait(&r->cond, &r->mu, &until);
        bool stopping = r->stopping, up = r->up;
        pthread_mutex_unlock(&r->mu);
        if (stopping) break;
        char why[WHY_MAX];
        if (up) {
            for (int i = 0; i < r->cfg.n_nodes; i++) {
                Baton__V1__DescribeResponse *d = NULL;
                bool refused;
                if (!node_describe(r, i, &d, &refused, why, sizeof why)) {
                    mark_down(r, why);
                    break;
                }
                bool restarted = d->instance != r->nodes[i].instance;
                protobuf_c_message_free_unpacked(&d->base, NULL);
                if (restarted) {
                    snprintf(why, sizeof why, "node %s restarted", r->nodes[i].target);
                    mark_down(r, why);
                    break;
                }
            }
            continue;
        }
        pthread_rwlock_wrlock(&r->step_lock);
        bool ok = restore(r, why, sizeof why);
        pthread_rwlock_unlock(&r->step_lock);
        if (ok) {
            fprintf(stderr, "baton serve: pipeline restored (epoch %llu)\n",
                    (unsigned long long)r->epoch);
            last_why[0] = '\0';
            if (r->cfg.on_available != NULL) r->cfg.on_available(r->cfg.user, true);
        } else if (strcmp(why, last_why) != 0) { /* say each new reason once */
            fprintf(stderr, "baton serve: pipeline still down: %s\n", why);
            snprintf(last_why, sizeof last_why, "%s", why);
        }
    }
    return NULL;
}

/* ---- the backend ---- */

/* One step through the whole chain with the buffers b (one set per step in flight). The slot
 * resets that ride on it are its own slots' only, so steps in flight at once never depend on
 * each other's order. */
static baton_status remote_call(baton_remote *r, step_bufs *b, const baton_step *step,
                                baton_error *err) {
    if (step->logits != NULL || step->x_out != NULL)
        return baton_fail(err, BATON_ERR_UNSUPPORTED, "logits never leave the last node");
    if (pthread_rwlock_tryrdlock(&r->step_lock) != 0)
        return baton_fail(err, BATON_ERR_UNAVAILABLE, "the pipeline is being reloaded");
    pthread_mutex_lock(&r->mu);
    if (!r->up) {
        baton_fail(err, BATON_ERR_UNAVAILABLE, "the pipeline is down: %s", r->down_reason);
        pthread_mutex_unlock(&r->mu);
        pthread_rwlock_unlock(&r->step_lock);
        return BATON_ERR_UNAVAILABLE;
    }
    uint64_t epoch = r->epoch;
    size_t n_resets = 0;
    for (int i = 0; i < step->n_seqs; i++) {
        int slot = step->seqs[i].slot;
        if (r->slot_epoch[slot] != epoch) {
            baton_fail(err, BATON_ERR_UNAVAILABLE,
                       "slot %d's state was lost when the pipeline was reloaded", slot);
            pthread_mutex_unlock(&r->mu);
            pthread_rwlock_unlock(&r->step_lock);
            return BATON_ERR_UNAVAILABLE;
        }
        if (r->pending_reset[slot]) b->resets[n_resets++] = slot;
    }
    uint64_t step_id = ++r->step_id;
    pthread_mutex_unlock(&r->mu);

    size_t total = 0;
    for (int i = 0; i < step->n_seqs; i++) {
        b->slots[i] = step->seqs[i].slot;
        b->seq_tokens[i] = step->seqs[i].n_tokens;
        total += (size_t)step->seqs[i].n_tokens;
        if (step->sampling != NULL) {
            const baton_sampling *p = &step->sampling[i];
            Baton__V1__StepSampling *q = &b->sampling[i];
            *q = (Baton__V1__StepSampling)BATON__V1__STEP_SAMPLING__INIT;
            q->temperature = p->temperature;
            q->top_k = p->top_k;
            q->top_p = p->top_p;
            q->presence_penalty = p->presence_penalty;
            q->frequency_penalty = p->frequency_penalty;
            q->uniform = p->uniform;
            b->sampling_ptrs[i] = q;
        }
    }
    Baton__V1__StepRequest req = BATON__V1__STEP_REQUEST__INIT;
    req.stage = (uint32_t)r->stages[0].plan.device.node_stage;
    req.epoch = epoch;
    req.step_id = step_id;
    req.n_reset_slots = n_resets;
    req.reset_slots = b->resets;
    req.n_slots = (size_t)step->n_seqs;
    req.slots = b->slots;
    req.n_seq_tokens = (size_t)step->n_seqs;
    req.seq_tokens = b->seq_tokens;
    req.n_tokens = total;
    req.tokens = (int32_t *)step->tokens;
    req.n_sampling = step->sampling != NULL ? (size_t)step->n_seqs : 0;
    req.sampling = b->sampling_ptrs;
    ProtobufCMessage *resp = NULL;
    rpc_status rs;
    char why[WHY_MAX];
    bool ok = rpc_call_unary(r->nodes[r->stages[0].node].channel, "/baton.v1.Stage/Step", &req.base,
                             &baton__v1__step_response__descriptor, r->cfg.step_timeout_ms, &resp,
                             &rs);
    if (!ok) {
        snprintf(why, sizeof why, "a step through %s failed: %s: %.300s",
                 r->nodes[r->stages[0].node].target, rpc_status_name(rs.code), rs.message);
    } else {
        const Baton__V1__StepResponse *sr = (const Baton__V1__StepResponse *)resp;
        size_t want = step->sampling != NULL ? (size_t)step->n_seqs : 0;
        ok = sr->n_tokens_out == want;
        for (size_t i = 0; ok && i < want; i++) {
            int32_t t = sr->tokens_out[i];
            ok = t >= 0 && t < r->model->n_vocab;
            step->tokens_out[i] = t;
        }
        if (!ok) snprintf(why, sizeof why, "the last stage answered with bad token ids");
        b->n_stage_ms = sr->n_stage_us == (size_t)r->n_stages ? r->n_stages : 0;
        for (int i = 0; i < b->n_stage_ms; i++) b->stage_ms[i] = sr->stage_us[i] / 1e3;
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    if (ok) {
        pthread_mutex_lock(&r->mu);
        for (size_t i = 0; i < n_resets; i++) r->pending_reset[b->resets[i]] = false;
        pthread_mutex_unlock(&r->mu);
    }
    pthread_rwlock_unlock(&r->step_lock);
    if (ok) return BATON_OK;
    mark_down(r, why);
    return baton_fail(err, BATON_ERR_UNAVAILABLE, "%s", why);
}

static baton_status remote_step(baton_backend *b, const baton_step *step, baton_error *err) {
    baton_remote *r = (baton_remote *)b;
    baton_status st = baton_step_check(b, step, err);
    if (st != BATON_OK) return st;
    return remote_call(r, &r->sync_bufs, step, err);
}

static baton_status remote_slot_reset(baton_backend *b, int slot, baton_error *err) {
    baton_remote *r = (baton_remote *)b;
    if (slot < 0 || slot >= b->config.n_slots)
        return baton_fail(err, BATON_ERR_ARG, "slot %d is outside [0, %d)", slot, b->config.n_slots);
    pthread_mutex_lock(&r->mu);
    r->slot_epoch[slot] = r->epoch;
    r->pending_reset[slot] = true;
    pthread_mutex_unlock(&r->mu);
    return BATON_OK;
}

static baton_status remote_slot_read(baton_backend *b, int slot, float *state, baton_error *err) {
    (void)b, (void)slot, (void)state;
    return baton_fail(err, BATON_ERR_UNSUPPORTED, "a remote pipeline's state stays on its nodes");
}

static baton_status remote_slot_write(baton_backend *b, int slot, const float *state,
                                      baton_error *err) {
    (void)b, (void)slot, (void)state;
    return baton_fail(err, BATON_ERR_UNSUPPORTED, "a remote pipeline's state stays on its nodes");
}

static void remote_free(baton_backend *b) {
    baton_remote_free((baton_remote *)b);
}

static const struct baton_backend_ops remote_ops = {
    .step = remote_step, .slot_reset = remote_slot_reset, .slot_read = remote_slot_read,
    .slot_write = remote_slot_write, .free = remote_free,
};

/* ---- life ---- */

baton_status baton_remote_new(const baton_remote_config *cfg, baton_remote **out,
                              baton_error *err) {
    *out = NULL;
    if (cfg->n_nodes < 1 || cfg->n_nodes > BATON_REMOTE_NODES_MAX)
        return baton_fail(err, BATON_ERR_ARG, "%d nodes, expected 1 to %d", cfg->n_nodes,
                          BATON_REMOTE_NODES_MAX);
    baton_remote *r = calloc(1, sizeof *r);
    if (r == NULL) return baton_fail(err, BATON_ERR_NOMEM, "out of memory for the pipeline");
    r->cfg = *cfg;
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&r->step_lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cond, &ca);
    pthread_condattr_destroy(&ca);
    for (int i = 0; i < cfg->n_nodes; i++) {
        if (strlen(cfg->nodes[i]) >= TARGET_MAX) {
            baton_remote_free(r);
            return baton_fail(err, BATON_ERR_ARG, "node address '%.64s...' is too long",
                              cfg->nodes[i]);
        }
        snprintf(r->nodes[i].target, TARGET_MAX, "%s", cfg->nodes[i]);
        baton_status st = rpc_channel_open(cfg->nodes[i], &cfg->limits, &r->nodes[i].channel, err);
        if (st != BATON_OK) {
            baton_remote_free(r);
            return st;
        }
    }
    r->base.ops = &remote_ops;
    r->base.name = "remote pipeline";
    *out = r;
    return BATON_OK;
}

baton_status baton_remote_describe(baton_remote *r, const baton_model *model, uint64_t header,
                                   baton_plan_device *devices, int max_devices, int *n_devices,
                                   baton_error *err) {
    r->model = model;
    r->header = header;
    *n_devices = 0;
    bool done[BATON_REMOTE_NODES_MAX] = {false};
    Baton__V1__DescribeResponse *answers[BATON_REMOTE_NODES_MAX] = {NULL};
    int64_t until = now_ms() + r->cfg.connect_timeout_ms;
    char why[WHY_MAX] = "";
    baton_status st = BATON_OK;
    for (;;) {
        int left = 0;
        for (int i = 0; i < r->cfg.n_nodes && st == BATON_OK; i++) {
            if (done[i]) continue;
            bool refused = false;
            if (node_reconnect(r, i, why, sizeof why) &&
                node_describe(r, i, &answers[i], &refused, why, sizeof why))
                done[i] = true;
            else if (refused) st = baton_fail(err, BATON_ERR_ARG, "%s", why);
            else left++;
        }
        if (st != BATON_OK || left == 0) break;
        if (now_ms() > until) {
            st = baton_fail(err, BATON_ERR_UNAVAILABLE, "%s", why);
            break;
        }
        struct timespec pause = {.tv_nsec = DESCRIBE_POLL_MS * 1000000L}; /* polling a peer */
        nanosleep(&pause, NULL);
    }
    for (int i = 0; i < r->cfg.n_nodes; i++) {
        const Baton__V1__DescribeResponse *d = answers[i];
        if (d != NULL) r->nodes[i].instance = d->instance;
        for (size_t k = 0; st == BATON_OK && d != NULL && k < d->n_devices; k++) {
            if (*n_devices == max_devices) {
                st = baton_fail(err, BATON_ERR_ARG, "more than %d stages over the nodes",
                                max_devices);
                break;
            }
            baton_plan_device *pd = &devices[(*n_devices)++];
            memset(pd, 0, sizeof *pd);
            snprintf(pd->host, sizeof pd->host, "%s", r->nodes[i].target);
            snprintf(pd->device, sizeof pd->device, "%s", d->devices[k]->spec);
            pd->node_stage = (int)k;
            pd->free_bytes = d->devices[k]->free_bytes;
        }
        if (d != NULL) protobuf_c_message_free_unpacked((ProtobufCMessage *)d, NULL);
    }
    return st;
}

baton_status baton_remote_start(baton_remote *r, const baton_plan *plan, const baton_model *model,
                                const baton_tensor_set *set, int n_slots, int max_seqs,
                                int max_tokens, baton_error *err) {
    r->model = model;
    r->base.model = model;
    r->base.config = (baton_stage_config){.layer_begin = 0, .layer_end = model->n_layer,
                                          .with_embedding = true, .with_head = true,
                                          .n_slots = n_slots, .max_seqs = max_seqs,
                                          .max_tokens = max_tokens};
    r->n_stages = plan->n_stages;
    for (int i = 0; i < plan->n_stages; i++) {
        remote_stage *s = &r->stages[i];
        s->plan = plan->stages[i];
        s->node = -1;
        for (int k = 0; k < r->cfg.n_nodes; k++)
            if (strcmp(r->nodes[k].target, s->plan.device.host) == 0) s->node = k;
        if (s->node < 0)
            return baton_fail(err, BATON_ERR_ARG, "stage %d's host %s is not a node", i,
                              s->plan.device.host);
    }
    r->slot_epoch = calloc((size_t)n_slots, sizeof *r->slot_epoch);
    r->pending_reset = calloc((size_t)n_slots, sizeof *r->pending_reset);
    if (!step_bufs_alloc(&r->sync_bufs, max_seqs) || r->slot_epoch == NULL ||
        r->pending_reset == NULL)
        return baton_fail(err, BATON_ERR_NOMEM, "out of memory for the pipeline");
    char why[WHY_MAX];
    r->epoch = 1;
    if (!load_all(r, r->epoch, set, why, sizeof why))
        return baton_fail(err, BATON_ERR_UNAVAILABLE, "%s", why);
    r->up = true;
    if (pthread_create(&r->monitor, NULL, monitor_thread, r) != 0)
        return baton_fail(err, BATON_ERR_NOMEM, "cannot start the pipeline monitor");
    r->monitor_started = true;
    return BATON_OK;
}

baton_backend *baton_remote_backend(baton_remote *r) {
    return &r->base;
}

const char *baton_remote_stage_device(const baton_remote *r, int i) {
    return r->stages[i].device;
}

void baton_remote_free(baton_remote *r) {
    if (r == NULL) return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);
    if (r->monitor_started) pthread_join(r->monitor, NULL);
    for (int i = 0; i < r->cfg.n_nodes; i++) rpc_channel_free(r->nodes[i].channel);
    step_bufs_free(&r->sync_bufs);
    free(r->slot_epoch);
    free(r->pending_reset);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->mu);
    pthread_rwlock_destroy(&r->step_lock);
    free(r);
}

/* ---- several steps in flight ---- */

enum { LANES_MAX = BATON_PLAN_STAGES_MAX };

typedef struct remote_pipe remote_pipe;

/* A thread that carries one step at a time through the chain (a unary call blocks). */
typedef struct {
    remote_pipe *p;
    pthread_t thread;
    bool thread_started;
    step_bufs bufs;
    const baton_step *step; /* guarded by p->mu: NULL while idle */
    void *tag;
    baton_status status;
    baton_error err;
    bool done;
} lane;

struct remote_pipe {
    baton_pipe base;
    baton_remote *r;
    lane lanes[LANES_MAX];
    int in_flight;          /* the caller's own */
    pthread_mutex_t mu;     /* guards the lanes' step and done, order, ms, stopping */
    pthread_cond_t cond;    /* a lane has work, a step is done, or stopping */
    int order[LANES_MAX];   /* lanes in the order their steps finished */
    int n_order;
    double ms[BATON_PLAN_STAGES_MAX]; /* each stage's compute per step, moving average */
    bool stopping;
};

#define REMOTE_MS_WEIGHT 0.2

static void *lane_thread(void *arg) {
    lane *l = arg;
    remote_pipe *p = l->p;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stopping && (l->step == NULL || l->done)) pthread_cond_wait(&p->cond, &p->mu);
        if (p->stopping) break;
        const baton_step *step = l->step;
        pthread_mutex_unlock(&p->mu);
        memset(&l->err, 0, sizeof l->err);
        l->bufs.n_stage_ms = 0;
        baton_status st = remote_call(p->r, &l->bufs, step, &l->err);
        pthread_mutex_lock(&p->mu);
        l->status = st;
        l->done = true;
        for (int i = 0; i < l->bufs.n_stage_ms; i++)
            p->ms[i] = p->ms[i] == 0 ? l->bufs.stage_ms[i]
                                     : (1 - REMOTE_MS_WEIGHT) * p->ms[i] +
                                           REMOTE_MS_WEIGHT * l->bufs.stage_ms[i];
        p->order[p->n_order++] = (int)(l - p->lanes);
        pthread_cond_broadcast(&p->cond);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static baton_status rpipe_submit(baton_pipe *b, const baton_step *step, void *tag,
                                 baton_error *err) {
    remote_pipe *p = (remote_pipe *)b;
    baton_status st = baton_pipe_step_check(b, step, err);
    if (st != BATON_OK) return st;
    pthread_mutex_lock(&p->mu);
    lane *l = NULL;
    for (int i = 0; i < b->depth && l == NULL; i++)
        if (p->lanes[i].step == NULL) l = &p->lanes[i];
    assert(l != NULL); /* the caller keeps fewer than depth in flight */
    l->step = step;
    l->tag = tag;
    l->done = false;
    p->in_flight++;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    return BATON_OK;
}

static bool rpipe_collect(baton_pipe *b, baton_pipe_done *done) {
    remote_pipe *p = (remote_pipe *)b;
    if (p->in_flight == 0) return false;
    pthread_mutex_lock(&p->mu);
    while (p->n_order == 0) pthread_cond_wait(&p->cond, &p->mu); /* bounded by step_timeout_ms */
    lane *l = &p->lanes[p->order[0]];
    memmove(p->order, p->order + 1, (size_t)(p->n_order - 1) * sizeof p->order[0]);
    p->n_order--;
    done->tag = l->tag;
    done->status = l->status;
    done->err = l->err;
    l->step = NULL;
    l->done = false;
    p->in_flight--;
    pthread_mutex_unlock(&p->mu);
    return true;
}

static baton_status rpipe_slot_reset(baton_pipe *b, int slot, baton_error *err) {
    remote_pipe *p = (remote_pipe *)b;
    return remote_slot_reset(&p->r->base, slot, err);
}

static void rpipe_stage_ms(baton_pipe *b, double *ms) {
    remote_pipe *p = (remote_pipe *)b;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < b->n_stages; i++) ms[i] = p->ms[i];
    pthread_mutex_unlock(&p->mu);
}

static void rpipe_free(baton_pipe *b) {
    remote_pipe *p = (remote_pipe *)b;
    assert(p->in_flight == 0);
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < b->depth; i++) {
        if (p->lanes[i].thread_started) pthread_join(p->lanes[i].thread, NULL);
        step_bufs_free(&p->lanes[i].bufs);
    }
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static const struct baton_pipe_ops rpipe_ops = {
    .submit = rpipe_submit, .collect = rpipe_collect, .slot_reset = rpipe_slot_reset,
    .stage_ms = rpipe_stage_ms, .free = rpipe_free,
};

baton_status baton_remote_pipe_new(baton_remote *r, int depth, baton_pipe **out,
                                   baton_error *err) {
    *out = NULL;
    if (depth == 0) depth = r->n_stages;
    if (depth < 1 || depth > LANES_MAX)
        return baton_fail(err, BATON_ERR_ARG, "%d steps in flight, expected 1 to %d", depth,
                          LANES_MAX);
    remote_pipe *p = calloc(1, sizeof *p);
    if (p == NULL) return baton_fail(err, BATON_ERR_NOMEM, "out of memory for the pipe");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->r = r;
    p->base.ops = &rpipe_ops;
    p->base.name = r->base.name;
    p->base.model = r->base.model;
    p->base.config = r->base.config;
    p->base.n_stages = r->n_stages;
    p->base.depth = depth;
    for (int i = 0; i < depth; i++) {
        lane *l = &p->lanes[i];
        l->p = p;
        if (!step_bufs_alloc(&l->bufs, r->base.config.max_seqs) ||
            pthread_create(&l->thread, NULL, lane_thread, l) != 0) {
            rpipe_free(&p->base);
            return baton_fail(err, BATON_ERR_NOMEM, "cannot start the pipe's threads");
        }
        l->thread_started = true;
    }
    *out = &p->base;
    return BATON_OK;
}
