#include "stage_service.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "baton/v1/stage.pb-c.h"
#include "fingerprint.h"
#include "rpc_client.h"
#include "tensor_set.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "hidden states cross the wire as little-endian float32"
#endif

/* Time kept back from the caller's deadline when calling the next stage, so that this stage
 * can still answer (with UNAVAILABLE) before its caller gives up. */
enum { HOP_MARGIN_MS = 50, QUEUE_MAX_LIMIT = 1024 };

/* Threads per stage that carry computed steps on to the next stage, so the stage can compute
 * the next micro-batch while the one before is further down the chain (a unary call blocks). */
enum { FORWARDERS = 4, BATON_STAGE_TIMES_MAX = 64 };

typedef enum { JOB_LOAD, JOB_STEP } job_kind;

/* The compute times of the stages a step went through on this node before it reached this one
 * (handed over in process): they go in front of this stage's in the answer. */
typedef struct {
    uint32_t us[BATON_STAGE_DEVICES_MAX];
    uint32_t n;
} stage_times;

typedef struct {
    job_kind kind;
    rpc_call *call;
    ProtobufCMessage *msg; /* LoadRequest or StepRequest, the worker frees it */
    stage_times before;    /* a step from the stage before on this node: its times */
} job;

/* A computed step on its way to the next stage. */
typedef struct {
    rpc_call *call;
    Baton__V1__StepRequest *msg; /* the request as it came; its header goes on */
    uint8_t *hidden;             /* this stage's output, malloc'ed */
    size_t hidden_len;
    stage_times times;           /* the stages' on this node so far, this one's last */
} forward;

typedef struct stage {
    baton_stage_service *svc;
    int index;
    pthread_t forwarders[FORWARDERS];
    int n_forwarders;
    forward *fwd;       /* ring of [queue_max], guarded by mu */
    int fwd_head, fwd_len;
    int fwd_busy;       /* queued or being forwarded; a Load waits for 0 (they use next) */
    pthread_cond_t fwd_cond; /* fwd has work, fwd_busy went down, or stopping */
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t mu; /* guards the queue and stopping */
    pthread_cond_t cond;
    job *queue;         /* ring of [queue_max] */
    int head, len;
    bool stopping;

    /* The worker's own: what Load set up. */
    bool loaded;
    uint64_t epoch;
    Baton__V1__LoadRequest params; /* the loaded range and limits (next hop not kept here) */
    baton_model *model;
    baton_backend *backend;
    uint64_t checksum;
    rpc_channel *next;
    uint32_t next_stage;
    struct stage *next_local; /* the next stage when it is on this node (no channel then) */
    float *x_in, *x_out;   /* [max_tokens][n_embd] */
    baton_seq *seqs;       /* [max_seqs] */
    baton_sampling *sampling;
    int32_t *tokens_out;
} stage;

struct baton_stage_service {
    baton_stage_service_config cfg;
    baton_tensor_set *set;
    uint64_t header;
    uint64_t instance;
    int n_layer, n_embd, n_vocab;
    stage stages[BATON_STAGE_DEVICES_MAX];
};

/* ---- Load ---- */

static void stage_unload(stage *s) {
    baton_backend_free(s->backend);
    baton_model_free(s->model);
    rpc_channel_free(s->next);
    free(s->x_in);
    free(s->x_out);
    free(s->seqs);
    free(s->sampling);
    free(s->tokens_out);
    s->backend = NULL;
    s->model = NULL;
    s->next = NULL;
    s->next_local = NULL;
    s->x_in = s->x_out = NULL;
    s->seqs = NULL;
    s->sampling = NULL;
    s->tokens_out = NULL;
    s->loaded = false;
}

static bool same_layers(const Baton__V1__LoadRequest *a, const Baton__V1__LoadRequest *b) {
    return a->layer_begin == b->layer_begin && a->layer_end == b->layer_end &&
           a->with_embedding == b->with_embedding && a->with_head == b->with_head &&
           a->n_slots == b->n_slots && a->max_seqs == b->max_seqs && a->max_tokens == b->max_tokens;
}

/* Checks a LoadRequest against the model and the limits; the reason in why. */
static bool load_check(const baton_stage_service *svc, const Baton__V1__LoadRequest *m, char *why,
                       size_t n) {
    if (m->layer_begin >= m->layer_end || m->layer_end > (uint32_t)svc->n_layer) {
        snprintf(why, n, "layers [%u, %u) are not a range of the model's %d", m->layer_begin,
                 m->layer_end, svc->n_layer);
        return false;
    }
    if (m->with_embedding && m->layer_begin != 0) {
        snprintf(why, n, "the embedding goes with layer 0");
        return false;
    }
    if (m->with_head != (m->layer_end == (uint32_t)svc->n_layer)) {
        snprintf(why, n, "the head goes with the last layer, and the last stage has it");
        return false;
    }
    if (m->with_head != (m->next_target[0] == '\0')) {
        snprintf(why, n, "every stage but the last needs a next stage");
        return false;
    }
    if (m->n_slots < 1 || m->n_slots > 4096 || m->max_seqs < 1 || m->max_seqs > m->n_slots ||
        m->max_tokens < m->max_seqs || m->max_tokens > 1 << 20) {
        snprintf(why, n, "n_slots %u, max_seqs %u, max_tokens %u are out of range", m->n_slots,
                 m->max_seqs, m->max_tokens);
        return false;
    }
    uint64_t hidden = (uint64_t)m->max_tokens * (uint64_t)svc->n_embd * sizeof(float);
    if (hidden + (64u << 10) > (uint64_t)svc->cfg.limits.message_bytes_max) {
        snprintf(why, n, "%u tokens of hidden states (%llu bytes) would not fit a message of %d",
                 m->max_tokens, (unsigned long long)hidden, svc->cfg.limits.message_bytes_max);
        return false;
    }
    return true;
}

static void do_load(stage *s, rpc_call *call, const Baton__V1__LoadRequest *m) {
    baton_stage_service *svc = s->svc;
    /* Steps still on their way out use the next stage's channel (bounded by their deadlines). */
    pthread_mutex_lock(&s->mu);
    while (s->fwd_busy > 0) pthread_cond_wait(&s->fwd_cond, &s->mu);
    pthread_mutex_unlock(&s->mu);
    char why[RPC_DETAILS_MAX];
    if (!load_check(svc, m, why, sizeof why)) {
        rpc_call_reply(call, NULL, GRPC_STATUS_INVALID_ARGUMENT, why);
        return;
    }
    baton_error err = {0};
    if (s->loaded && same_layers(&s->params, m)) {
        /* Already there (e.g. another node of the chain restarted): fresh slots only. */
        for (uint32_t i = 0; i < m->n_slots; i++)
            if (s->backend->ops->slot_reset(s->backend, (int)i, &err) != BATON_OK) break;
        rpc_channel_free(s->next);
        s->next = NULL;
        s->next_local = NULL;
    } else {
        stage_unload(s);
        baton_model_options opt = {.layer_begin = (int)m->layer_begin, .layer_end = (int)m->layer_end,
                                   .skip_embedding = !m->with_embedding,
                                   .skip_head = !m->with_head,
                                   .prefetch = strcmp(svc->cfg.devices[s->index], "cpu") == 0};
        baton_stage_config sc = {.layer_begin = (int)m->layer_begin, .layer_end = (int)m->layer_end,
                                 .with_embedding = m->with_embedding, .with_head = m->with_head,
                                 .n_slots = (int)m->n_slots, .max_seqs = (int)m->max_seqs,
                                 .max_tokens = (int)m->max_tokens};
        size_t x_floats = (size_t)m->max_tokens * (size_t)svc->n_embd;
        if (baton_model_load(svc->cfg.model_path, &opt, &s->model, &err) == BATON_OK &&
            svc->cfg.open(svc->cfg.devices[s->index], s->model, &sc, &s->backend, &err) == BATON_OK) {
            s->x_in = malloc(x_floats * sizeof(float));
            s->x_out = malloc(x_floats * sizeof(float));
            s->seqs = calloc(m->max_seqs, sizeof *s->seqs);
            s->sampling = calloc(m->max_seqs, sizeof *s->sampling);
            s->tokens_out = calloc(m->max_seqs, sizeof *s->tokens_out);
            if (s->x_in == NULL || s->x_out == NULL || s->seqs == NULL || s->sampling == NULL ||
                s->tokens_out == NULL)
                baton_fail(&err, BATON_ERR_NOMEM, "out of memory for the stage's buffers");
            s->checksum = baton_fingerprint_range(svc->set, (int)m->layer_begin, (int)m->layer_end,
                                                  m->with_embedding, m->with_head);
        } else if (err.status == BATON_OK) {
            baton_fail(&err, BATON_ERR_IO, "cannot load the stage");
        }
        if (err.status != BATON_OK) stage_unload(s);
    }
    if (err.status == BATON_OK && m->next_same_node) {
        /* The next stage is in this process: steps go straight into its queue. */
        if (m->next_stage < (uint32_t)svc->cfg.n_devices && m->next_stage != (uint32_t)s->index)
            s->next_local = &svc->stages[m->next_stage];
        else
            baton_fail(&err, BATON_ERR_ARG, "next stage %u is not another stage of this node",
                       m->next_stage);
        if (err.status != BATON_OK) stage_unload(s);
    } else if (err.status == BATON_OK && m->next_target[0] != '\0' &&
               rpc_channel_open(m->next_target, &svc->cfg.limits, &s->next, &err) != BATON_OK) {
        stage_unload(s);
    }
    if (err.status != BATON_OK) {
        rpc_call_reply(call, NULL,
                       err.status == BATON_ERR_NOMEM  ? GRPC_STATUS_RESOURCE_EXHAUSTED
                       : err.status == BATON_ERR_ARG ? GRPC_STATUS_INVALID_ARGUMENT
                                                      : GRPC_STATUS_FAILED_PRECONDITION,
                       err.msg);
        return;
    }
    s->params = *m;
    s->params.next_target = NULL;
    s->next_stage = m->next_stage;
    s->epoch = m->epoch;
    s->loaded = true;
    fprintf(stderr, "baton node: stage %d: layers [%u, %u)%s%s on %s, epoch %llu\n", s->index,
            m->layer_begin, m->layer_end, m->with_embedding ? " +embedding" : "",
            m->with_head ? " +head" : "", s->backend->name, (unsigned long long)m->epoch);
    if (s->next_local != NULL) {
        printf("baton node: stage %d hands its steps to stage %u in this process\n", s->index,
               m->next_stage);
        fflush(stdout);
    }
    Baton__V1__LoadResponse resp = BATON__V1__LOAD_RESPONSE__INIT;
    resp.header_fingerprint = svc->header;
    resp.checksum = s->checksum;
    resp.device = (char *)s->backend->name;
    rpc_call_reply(call, &resp.base, GRPC_STATUS_OK, "");
}

/* ---- Step ---- */

/* Checks the shape of a StepRequest against the loaded stage; fills seqs and sampling. */
static bool step_check(stage *s, const Baton__V1__StepRequest *m, int64_t *total, char *why,
                       size_t n) {
    const Baton__V1__LoadRequest *p = &s->params;
    if (m->n_slots != m->n_seq_tokens || m->n_slots < 1 || m->n_slots > p->max_seqs) {
        snprintf(why, n, "%zu slots and %zu token counts, expected 1 to %u of each", m->n_slots,
                 m->n_seq_tokens, p->max_seqs);
        return false;
    }
    *total = 0;
    for (size_t i = 0; i < m->n_slots; i++) {
        if (m->seq_tokens[i] < 1 || m->seq_tokens[i] > (int32_t)p->max_tokens) {
            snprintf(why, n, "sequence %zu has %d tokens", i, m->seq_tokens[i]);
            return false;
        }
        *total += m->seq_tokens[i];
        s->seqs[i] = (baton_seq){.slot = m->slots[i], .n_tokens = m->seq_tokens[i]};
    }
    if (*total > (int64_t)p->max_tokens) {
        snprintf(why, n, "%lld tokens in a step, limit %u", (long long)*total, p->max_tokens);
        return false;
    }
    if (p->with_embedding ? m->n_tokens != (size_t)*total
                          : m->hidden.len != (size_t)*total * (size_t)s->svc->n_embd * sizeof(float)) {
        snprintf(why, n, "the step's input does not match its %lld tokens", (long long)*total);
        return false;
    }
    if (m->n_sampling != 0 && m->n_sampling != m->n_slots) {
        snprintf(why, n, "%zu sampling entries for %zu sequences", m->n_sampling, m->n_slots);
        return false;
    }
    if (m->n_reset_slots > p->n_slots) {
        snprintf(why, n, "%zu slots to reset, the stage has %u", m->n_reset_slots, p->n_slots);
        return false;
    }
    for (size_t i = 0; i < m->n_reset_slots; i++) {
        if (m->reset_slots[i] < 0 || m->reset_slots[i] >= (int32_t)p->n_slots) {
            snprintf(why, n, "reset slot %d is outside [0, %u)", m->reset_slots[i], p->n_slots);
            return false;
        }
    }
    for (size_t i = 0; i < m->n_sampling; i++) {
        const Baton__V1__StepSampling *q = m->sampling[i];
        s->sampling[i] = (baton_sampling){.temperature = q->temperature, .top_k = q->top_k,
                                          .top_p = q->top_p,
                                          .presence_penalty = q->presence_penalty,
                                          .frequency_penalty = q->frequency_penalty,
                                          .uniform = q->uniform};
    }
    return true;
}

static grpc_status_code status_code(baton_status st) {
    switch (st) {
    case BATON_ERR_ARG: return GRPC_STATUS_INVALID_ARGUMENT;
    case BATON_ERR_NOMEM: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case BATON_ERR_UNAVAILABLE: return GRPC_STATUS_UNAVAILABLE;
    default: return GRPC_STATUS_INTERNAL;
    }
}

static uint32_t elapsed_us(const struct timespec *a) {
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    int64_t us = (int64_t)(b.tv_sec - a->tv_sec) * 1000000 + (b.tv_nsec - a->tv_nsec) / 1000;
    return us < 0 ? 0 : us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void forward_free(forward *f) {
    protobuf_c_message_free_unpacked(&f->msg->base, NULL);
    free(f->hidden);
}

/* The step for the next stage: m's header, this stage's hidden states instead of its input. It
 * points into m and hidden. */
static Baton__V1__StepRequest next_request(const stage *s, const Baton__V1__StepRequest *m,
                                           uint8_t *hidden, size_t hidden_len) {
    Baton__V1__StepRequest next = *m;
    next.stage = s->next_stage;
    next.n_tokens = 0;
    next.tokens = NULL;
    next.hidden.data = hidden;
    next.hidden.len = hidden_len;
    return next;
}

/* Calls the next stage with f's hidden states and answers f's call with what comes back, the
 * times of this node's stages in front of the later stages' times. On a forwarder thread. */
static void forward_run(stage *s, forward *f) {
    char why[RPC_DETAILS_MAX];
    Baton__V1__StepRequest next = next_request(s, f->msg, f->hidden, f->hidden_len);
    int64_t left_ms = rpc_call_deadline_ms(f->call);
    int64_t timeout_ms = left_ms == INT64_MAX ? 60000 : left_ms - HOP_MARGIN_MS;
    if (timeout_ms < 1) timeout_ms = 1;
    ProtobufCMessage *resp = NULL;
    rpc_status rs;
    if (!rpc_call_unary(s->next, "/baton.v1.Stage/Step", &next.base,
                        &baton__v1__step_response__descriptor, timeout_ms, &resp, &rs)) {
        snprintf(why, sizeof why, "the next stage: %s: %.400s", rpc_status_name(rs.code), rs.message);
        /* The caller's own errors pass back as they are; the chain breaking is UNAVAILABLE. */
        rpc_call_reply(f->call, NULL,
                       rs.code == GRPC_STATUS_INVALID_ARGUMENT ? rs.code : GRPC_STATUS_UNAVAILABLE,
                       why);
        return;
    }
    Baton__V1__StepResponse *later = (Baton__V1__StepResponse *)resp;
    uint32_t us[BATON_STAGE_TIMES_MAX];
    size_t n_us = 0;
    for (uint32_t i = 0; i < f->times.n && n_us < BATON_STAGE_TIMES_MAX; i++) us[n_us++] = f->times.us[i];
    for (size_t i = 0; i < later->n_stage_us && n_us < BATON_STAGE_TIMES_MAX; i++)
        us[n_us++] = later->stage_us[i];
    Baton__V1__StepResponse out = BATON__V1__STEP_RESPONSE__INIT;
    out.n_tokens_out = later->n_tokens_out;
    out.tokens_out = later->tokens_out;
    out.n_stage_us = n_us;
    out.stage_us = us;
    rpc_call_reply(f->call, &out.base, GRPC_STATUS_OK, "");
    protobuf_c_message_free_unpacked(resp, NULL);
}

static void *forward_thread(void *arg) {
    stage *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stopping && s->fwd_len == 0) pthread_cond_wait(&s->fwd_cond, &s->mu);
        if (s->fwd_len == 0) break; /* stopping, nothing left */
        forward f = s->fwd[s->fwd_head];
        s->fwd_head = (s->fwd_head + 1) % s->svc->cfg.queue_max;
        s->fwd_len--;
        bool stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stopping) rpc_call_reply(f.call, NULL, GRPC_STATUS_UNAVAILABLE, "the node is shutting down");
        else forward_run(s, &f);
        forward_free(&f);
        pthread_mutex_lock(&s->mu);
        s->fwd_busy--;
        pthread_cond_broadcast(&s->fwd_cond);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static grpc_status_code queue_job(stage *s, const job *j, const char **why);

/* Hands the computed step to the next stage of this node (next_request) into that stage's queue
 * (a copy of the request it owns, as if it had come over gRPC), the times so far with it; the
 * call is answered there. */
static void hand_over(stage *s, rpc_call *call, const Baton__V1__StepRequest *m, size_t hidden_len,
                      const stage_times *times) {
    /* A chain inside one node passes each of its stages once: more hops than stages is a loop
     * that the Loads made (no deadline would end it, as one does over gRPC). */
    if (times->n >= (uint32_t)s->svc->cfg.n_devices) {
        rpc_call_reply(call, NULL, GRPC_STATUS_FAILED_PRECONDITION,
                       "the stages of this node were loaded into a loop");
        return;
    }
    Baton__V1__StepRequest next = next_request(s, m, (uint8_t *)s->x_out, hidden_len);
    size_t size = baton__v1__step_request__get_packed_size(&next);
    uint8_t *buf = malloc(size);
    Baton__V1__StepRequest *copy = NULL;
    if (buf != NULL) {
        baton__v1__step_request__pack(&next, buf);
        copy = baton__v1__step_request__unpack(NULL, size, buf);
        free(buf);
    }
    if (copy == NULL) {
        rpc_call_reply(call, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for the step");
        return;
    }
    job j = {.kind = JOB_STEP, .call = call, .msg = &copy->base, .before = *times};
    const char *why = NULL;
    grpc_status_code code = queue_job(s->next_local, &j, &why);
    if (code != GRPC_STATUS_OK) {
        protobuf_c_message_free_unpacked(&copy->base, NULL);
        rpc_call_reply(call, NULL, code, why);
    }
}

/* Computes a step; the last stage answers, the others hand it to the next stage of this node or
 * to a forwarder. Returns true when m went with it (the forwarder frees it). before: the times of
 * the stages of this node it went through already. */
static bool do_step(stage *s, rpc_call *call, Baton__V1__StepRequest *m, const stage_times *before) {
    char why[RPC_DETAILS_MAX];
    if (!s->loaded || m->epoch != s->epoch) {
        snprintf(why, sizeof why, "stage %d is not loaded for epoch %llu", s->index,
                 (unsigned long long)m->epoch);
        rpc_call_reply(call, NULL, GRPC_STATUS_FAILED_PRECONDITION, why);
        return false;
    }
    int64_t total = 0;
    if (!step_check(s, m, &total, why, sizeof why)) {
        rpc_call_reply(call, NULL, GRPC_STATUS_INVALID_ARGUMENT, why);
        return false;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    baton_error err = {0};
    for (size_t i = 0; i < m->n_reset_slots; i++) {
        if (s->backend->ops->slot_reset(s->backend, m->reset_slots[i], &err) != BATON_OK) {
            rpc_call_reply(call, NULL, status_code(err.status), err.msg);
            return false;
        }
    }
    bool last = s->params.with_head;
    baton_step step = {.n_seqs = (int)m->n_slots, .seqs = s->seqs};
    if (s->params.with_embedding) {
        step.tokens = m->tokens;
    } else {
        memcpy(s->x_in, m->hidden.data, m->hidden.len); /* aligned for the backend */
        step.x_in = s->x_in;
    }
    if (!last) step.x_out = s->x_out;
    if (last && m->n_sampling > 0) {
        step.sampling = s->sampling;
        step.tokens_out = s->tokens_out;
    }
    baton_status st = baton_backend_step(s->backend, &step, &err);
    if (st != BATON_OK) {
        rpc_call_reply(call, NULL, status_code(st), err.msg);
        return false;
    }
    stage_times times = *before;
    if (times.n < BATON_STAGE_DEVICES_MAX) times.us[times.n++] = elapsed_us(&t0);
    size_t hidden_len = (size_t)total * (size_t)s->svc->n_embd * sizeof(float);
    if (last) {
        Baton__V1__StepResponse resp = BATON__V1__STEP_RESPONSE__INIT;
        resp.n_tokens_out = step.tokens_out != NULL ? m->n_slots : 0;
        resp.tokens_out = s->tokens_out;
        resp.n_stage_us = times.n;
        resp.stage_us = times.us;
        rpc_call_reply(call, &resp.base, GRPC_STATUS_OK, "");
        return false;
    }
    if (s->next_local != NULL) {
        hand_over(s, call, m, hidden_len, &times);
        return false;
    }
    /* Forward: the same header, this stage's hidden states instead of the input. */
    forward f = {.call = call, .msg = m, .times = times};
    f.hidden_len = hidden_len;
    f.hidden = malloc(f.hidden_len);
    if (f.hidden == NULL) {
        rpc_call_reply(call, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for the step");
        return false;
    }
    memcpy(f.hidden, s->x_out, f.hidden_len);
    pthread_mutex_lock(&s->mu);
    const char *refusal = s->stopping                           ? "the node is shutting down"
                          : s->fwd_len == s->svc->cfg.queue_max ? "the stage's queue is full"
                                                                : NULL;
    if (refusal == NULL) {
        s->fwd[(s->fwd_head + s->fwd_len) % s->svc->cfg.queue_max] = f;
        s->fwd_len++;
        s->fwd_busy++;
        pthread_cond_broadcast(&s->fwd_cond);
    }
    bool stopping = s->stopping;
    pthread_mutex_unlock(&s->mu);
    if (refusal != NULL) {
        free(f.hidden);
        rpc_call_reply(call, NULL,
                       stopping ? GRPC_STATUS_UNAVAILABLE : GRPC_STATUS_RESOURCE_EXHAUSTED, refusal);
        return false;
    }
    return true;
}

/* ---- the worker ---- */

static void *stage_thread(void *arg) {
    stage *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && s->len == 0) pthread_cond_wait(&s->cond, &s->mu);
        if (s->stopping) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        job j = s->queue[s->head];
        s->head = (s->head + 1) % s->svc->cfg.queue_max;
        s->len--;
        pthread_mutex_unlock(&s->mu);
        bool kept = false;
        if (j.kind == JOB_LOAD) do_load(s, j.call, (Baton__V1__LoadRequest *)j.msg);
        else kept = do_step(s, j.call, (Baton__V1__StepRequest *)j.msg, &j.before);
        if (!kept) protobuf_c_message_free_unpacked(j.msg, NULL);
    }
    /* Stopping: whatever still waits is refused. */
    pthread_mutex_lock(&s->mu);
    while (s->len > 0) {
        job j = s->queue[s->head];
        s->head = (s->head + 1) % s->svc->cfg.queue_max;
        s->len--;
        rpc_call_reply(j.call, NULL, GRPC_STATUS_UNAVAILABLE, "the node is shutting down");
        protobuf_c_message_free_unpacked(j.msg, NULL);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Puts a job in the stage's queue: GRPC_STATUS_OK, or the status to answer its call with and
 * *why (the caller answers, and frees the message). */
static grpc_status_code queue_job(stage *s, const job *j, const char **why) {
    pthread_mutex_lock(&s->mu);
    grpc_status_code code = GRPC_STATUS_OK;
    if (s->stopping) {
        code = GRPC_STATUS_UNAVAILABLE;
        *why = "the node is shutting down";
    } else if (s->len == s->svc->cfg.queue_max) {
        code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        *why = "the stage's queue is full";
    } else {
        s->queue[(s->head + s->len) % s->svc->cfg.queue_max] = *j;
        s->len++;
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&s->mu);
    return code;
}

/* Queues a Load or Step for its stage, or answers the call when it cannot. */
static void enqueue(baton_stage_service *svc, rpc_call *call, job_kind kind,
                    grpc_byte_buffer *request) {
    const ProtobufCMessageDescriptor *desc = kind == JOB_LOAD
                                                 ? &baton__v1__load_request__descriptor
                                                 : &baton__v1__step_request__descriptor;
    ProtobufCMessage *m = rpc_buffer_unpack(request, desc);
    if (m == NULL) {
        rpc_call_reply(call, NULL, GRPC_STATUS_INVALID_ARGUMENT, "malformed request");
        return;
    }
    uint32_t index = kind == JOB_LOAD ? ((Baton__V1__LoadRequest *)m)->stage
                                      : ((Baton__V1__StepRequest *)m)->stage;
    if (index >= (uint32_t)svc->cfg.n_devices) {
        protobuf_c_message_free_unpacked(m, NULL);
        rpc_call_reply(call, NULL, GRPC_STATUS_INVALID_ARGUMENT, "no such stage on this node");
        return;
    }
    stage *s = &svc->stages[index];
    job j = {.kind = kind, .call = call, .msg = m};
    const char *why = NULL;
    grpc_status_code code = queue_job(s, &j, &why);
    if (code != GRPC_STATUS_OK) {
        protobuf_c_message_free_unpacked(m, NULL);
        rpc_call_reply(call, NULL, code, why);
    }
}

static void on_load(void *ctx, rpc_call *call, grpc_byte_buffer *request) {
    enqueue(ctx, call, JOB_LOAD, request);
}

static void on_step(void *ctx, rpc_call *call, grpc_byte_buffer *request) {
    enqueue(ctx, call, JOB_STEP, request);
}

static void on_describe(void *ctx, rpc_call *call, grpc_byte_buffer *request) {
    baton_stage_service *svc = ctx;
    (void)request;
    Baton__V1__StageDevice devices[BATON_STAGE_DEVICES_MAX];
    Baton__V1__StageDevice *ptrs[BATON_STAGE_DEVICES_MAX];
    for (int i = 0; i < svc->cfg.n_devices; i++) {
        devices[i] = (Baton__V1__StageDevice)BATON__V1__STAGE_DEVICE__INIT;
        devices[i].spec = (char *)svc->cfg.devices[i];
        devices[i].name = (char *)svc->cfg.devices[i];
        devices[i].free_bytes = svc->cfg.free_bytes[i];
        ptrs[i] = &devices[i];
    }
    Baton__V1__DescribeResponse resp = BATON__V1__DESCRIBE_RESPONSE__INIT;
    resp.instance = svc->instance;
    resp.header_fingerprint = svc->header;
    resp.n_layer = (uint32_t)svc->n_layer;
    resp.n_embd = (uint32_t)svc->n_embd;
    resp.n_vocab = (uint32_t)svc->n_vocab;
    resp.n_devices = (size_t)svc->cfg.n_devices;
    resp.devices = ptrs;
    rpc_call_reply(call, &resp.base, GRPC_STATUS_OK, "");
}

/* ---- life ---- */

baton_status baton_stage_service_new(const baton_stage_service_config *cfg,
                                     baton_stage_service **out, baton_error *err) {
    *out = NULL;
    if (cfg->n_devices < 1 || cfg->n_devices > BATON_STAGE_DEVICES_MAX)
        return baton_fail(err, BATON_ERR_ARG, "%d devices, expected 1 to %d", cfg->n_devices,
                          BATON_STAGE_DEVICES_MAX);
    if (cfg->queue_max < 1 || cfg->queue_max > QUEUE_MAX_LIMIT)
        return baton_fail(err, BATON_ERR_ARG, "queue of %d, expected 1 to %d", cfg->queue_max,
                          QUEUE_MAX_LIMIT);
    baton_stage_service *svc = calloc(1, sizeof *svc);
    if (svc == NULL) return baton_fail(err, BATON_ERR_NOMEM, "out of memory for the service");
    svc->cfg = *cfg;
    /* The model's shape from a load of nothing but layer 0's small tensors. */
    baton_model *dims = NULL;
    baton_model_options opt = {.layer_begin = 0, .layer_end = 1, .skip_embedding = true,
                               .skip_head = true};
    baton_status st = baton_model_load(cfg->model_path, &opt, &dims, err);
    if (st == BATON_OK) st = baton_tensor_set_open(cfg->model_path, &svc->set, err);
    if (st != BATON_OK) {
        baton_model_free(dims);
        free(svc);
        return st;
    }
    svc->n_layer = dims->n_layer;
    svc->n_embd = dims->n_embd;
    svc->n_vocab = dims->n_vocab;
    baton_model_free(dims);
    svc->header = baton_fingerprint_header(svc->set);
    if (getrandom(&svc->instance, sizeof svc->instance, 0) != (ssize_t)sizeof svc->instance)
        svc->instance = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)clock();
    for (int i = 0; i < cfg->n_devices; i++) {
        stage *s = &svc->stages[i];
        s->svc = svc;
        s->index = i;
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cond, NULL);
        pthread_cond_init(&s->fwd_cond, NULL);
        s->queue = calloc((size_t)cfg->queue_max, sizeof *s->queue);
        s->fwd = calloc((size_t)cfg->queue_max, sizeof *s->fwd);
        if (s->queue == NULL || s->fwd == NULL ||
            pthread_create(&s->thread, NULL, stage_thread, s) != 0) {
            baton_stage_service_free(svc);
            return baton_fail(err, BATON_ERR_NOMEM, "cannot start the stage workers");
        }
        s->thread_started = true;
        for (; s->n_forwarders < FORWARDERS; s->n_forwarders++) {
            if (pthread_create(&s->forwarders[s->n_forwarders], NULL, forward_thread, s) != 0) {
                baton_stage_service_free(svc);
                return baton_fail(err, BATON_ERR_NOMEM, "cannot start the stage workers");
            }
        }
    }
    *out = svc;
    return BATON_OK;
}

void baton_stage_service_methods(baton_stage_service *svc, rpc_method *methods) {
    const rpc_method all[BATON_STAGE_METHODS] = {
        {"/baton.v1.Stage/Describe", on_describe, svc},
        {"/baton.v1.Stage/Load", on_load, svc},
        {"/baton.v1.Stage/Step", on_step, svc},
    };
    memcpy(methods, all, sizeof all);
}

void baton_stage_service_stop(baton_stage_service *svc) {
    for (int i = 0; i < svc->cfg.n_devices; i++) {
        stage *s = &svc->stages[i];
        if (s->svc == NULL) continue;
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_signal(&s->cond);
        pthread_cond_broadcast(&s->fwd_cond);
        pthread_mutex_unlock(&s->mu);
        if (s->thread_started) {
            pthread_join(s->thread, NULL);
            s->thread_started = false;
        }
        for (int k = 0; k < s->n_forwarders; k++) pthread_join(s->forwarders[k], NULL);
        s->n_forwarders = 0;
    }
}

void baton_stage_service_free(baton_stage_service *svc) {
    if (svc == NULL) return;
    baton_stage_service_stop(svc);
    for (int i = 0; i < svc->cfg.n_devices; i++) {
        stage *s = &svc->stages[i];
        if (s->svc == NULL) continue;
        stage_unload(s);
        free(s->queue);
        free(s->fwd);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cond);
        pthread_cond_destroy(&s->fwd_cond);
    }
    baton_tensor_set_free(svc->set);
    free(svc);
}
