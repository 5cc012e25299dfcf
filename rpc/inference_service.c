#include "inference_service.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "baton/v1/inference.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "procfs.h"
#include "utf8_stream.h"

/* Text a stream may have unsent before it waits for its client to read. */
enum { OUTBOX_BYTES_MAX = 64 << 10 };

typedef enum { SERVICE_LOADING, SERVICE_READY, SERVICE_STOPPED } service_state;

struct baton_inference_service {
    baton_service_limits limits;
    _Atomic int state;
    atomic_bool unavailable; /* a pipeline node is down */
    const baton_model *model;
    const baton_tokenizer *tok;
    baton_scheduler *scheduler;
    baton_stage_info stages[BATON_SERVICE_STAGES_MAX];
    int n_stages;
};

/* ---- Generate: a stream's output waiting to be sent ---- */

typedef struct {
    rpc_call *call;
    pthread_mutex_t mu; /* guards what follows */
    char *text;
    size_t text_len, text_cap;
    int32_t *ids;
    size_t n_ids, ids_cap;
    bool lost;          /* output was dropped for want of memory: the call ends in error */
    bool finished, final_taken;
    baton_finish reason;
    uint32_t prompt_tokens, completion_tokens;
    char message[RPC_DETAILS_MAX];
} outbox;

static void outbox_free(void *user) {
    outbox *o = user;
    pthread_mutex_destroy(&o->mu);
    free(o->text);
    free(o->ids);
    free(o);
}

static bool grow(void **buf, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = need * 2;
    void *p = realloc(*buf, c * elem);
    if (p == NULL) return false;
    *buf = p;
    *cap = c;
    return true;
}

static void sink_emit(void *user, const char *text, size_t len, int32_t id) {
    outbox *o = user;
    pthread_mutex_lock(&o->mu);
    if (grow((void **)&o->text, &o->text_cap, o->text_len + len + 1, 1) &&
        grow((void **)&o->ids, &o->ids_cap, o->n_ids + 1, sizeof(int32_t))) {
        /* protobuf-c strings end at a NUL, so U+0000 cannot be sent as text (ids carry it). */
        for (size_t i = 0; i < len; i++)
            if (text[i] != '\0') o->text[o->text_len++] = text[i];
        o->text[o->text_len] = '\0';
        if (id >= 0) o->ids[o->n_ids++] = id;
    } else {
        o->lost = true;
    }
    pthread_mutex_unlock(&o->mu);
    rpc_call_wake(o->call);
}

static void sink_finish(void *user, baton_finish reason, uint32_t prompt_tokens,
                        uint32_t completion_tokens, const char *message) {
    outbox *o = user;
    rpc_call *call = o->call;
    pthread_mutex_lock(&o->mu);
    o->finished = true;
    o->reason = reason;
    o->prompt_tokens = prompt_tokens;
    o->completion_tokens = completion_tokens;
    snprintf(o->message, sizeof o->message, "%s", message);
    pthread_mutex_unlock(&o->mu);
    rpc_call_wake(call);
    rpc_call_release(call); /* o may be gone from here on */
}

static bool sink_cancelled(void *user) {
    outbox *o = user;
    return rpc_call_cancelled(o->call);
}

static bool sink_backlogged(void *user) {
    outbox *o = user;
    pthread_mutex_lock(&o->mu);
    bool full = o->text_len > OUTBOX_BYTES_MAX;
    pthread_mutex_unlock(&o->mu);
    return full;
}

static const baton_stream_sink outbox_sink = {
    .emit = sink_emit, .finish = sink_finish, .cancelled = sink_cancelled,
    .backlogged = sink_backlogged,
};

static Baton__V1__FinishReason finish_reason(baton_finish f) {
    switch (f) {
    case BATON_FINISH_STOP_TOKEN: return BATON__V1__FINISH_REASON__FINISH_REASON_STOP_TOKEN;
    case BATON_FINISH_STOP_STRING: return BATON__V1__FINISH_REASON__FINISH_REASON_STOP_STRING;
    case BATON_FINISH_MAX_TOKENS: return BATON__V1__FINISH_REASON__FINISH_REASON_MAX_TOKENS;
    case BATON_FINISH_CANCELLED:
    case BATON_FINISH_DEADLINE:
    case BATON_FINISH_SHUTDOWN: return BATON__V1__FINISH_REASON__FINISH_REASON_CANCELLED;
    case BATON_FINISH_ERROR:
    case BATON_FINISH_UNAVAILABLE: return BATON__V1__FINISH_REASON__FINISH_REASON_ERROR;
    case BATON_FINISH_NONE: break;
    }
    return BATON__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED;
}

static grpc_status_code finish_status(baton_finish f) {
    switch (f) {
    case BATON_FINISH_CANCELLED: return GRPC_STATUS_CANCELLED;
    case BATON_FINISH_DEADLINE: return GRPC_STATUS_DEADLINE_EXCEEDED;
    case BATON_FINISH_SHUTDOWN:
    case BATON_FINISH_UNAVAILABLE: return GRPC_STATUS_UNAVAILABLE;
    case BATON_FINISH_ERROR: return GRPC_STATUS_INTERNAL;
    default: return GRPC_STATUS_OK;
    }
}

/* rpc_source.take: everything pending as one GenerateResponse; the finish with the last. */
static void outbox_take(void *user, rpc_out *out) {
    outbox *o = user;
    pthread_mutex_lock(&o->mu);
    bool final = o->finished && !o->final_taken;
    if (o->text_len == 0 && o->n_ids == 0 && !final) {
        pthread_mutex_unlock(&o->mu);
        return;
    }
    Baton__V1__GenerateResponse resp = BATON__V1__GENERATE_RESPONSE__INIT;
    Baton__V1__Finish finish = BATON__V1__FINISH__INIT;
    resp.text = o->text != NULL ? o->text : "";
    resp.n_token_ids = o->n_ids;
    resp.token_ids = o->ids;
    if (final) {
        finish.reason = finish_reason(o->reason);
        finish.prompt_tokens = o->prompt_tokens;
        finish.completion_tokens = o->completion_tokens;
        finish.message = o->message;
        resp.finish = &finish;
        out->last = true;
        out->code = finish_status(o->reason);
        snprintf(out->details, sizeof out->details, "%s", o->message);
        if (o->lost) {
            finish.reason = BATON__V1__FINISH_REASON__FINISH_REASON_ERROR;
            out->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
            snprintf(out->details, sizeof out->details, "the server ran out of memory for output");
        }
        o->final_taken = true;
    }
    out->message = rpc_buffer_pack(&resp.base);
    o->text_len = 0;
    if (o->text != NULL) o->text[0] = '\0';
    o->n_ids = 0;
    pthread_mutex_unlock(&o->mu);
}

static const rpc_source outbox_source = {.take = outbox_take, .free = outbox_free};

/* ---- checking a GenerateRequest ---- */

/* Fills req from m or writes what is wrong in why. */
static bool generate_check(const baton_inference_service *svc, const Baton__V1__GenerateRequest *m,
                           baton_gen_request *req, char *why, size_t why_size) {
    const baton_service_limits *lim = &svc->limits;
    int32_t n_vocab = svc->model->n_vocab;
    bool has_text = m->prompt != NULL && m->prompt[0] != '\0';
    if (has_text == (m->n_prompt_tokens > 0)) {
        snprintf(why, why_size, "give exactly one of prompt and prompt_tokens (%s)",
                 has_text ? "both are set" : "the prompt is empty");
        return false;
    }
    if (has_text) {
        baton_error err = {0};
        if (baton_tokenizer_encode(svc->tok, m->prompt, strlen(m->prompt), &req->prompt,
                                   &req->n_prompt, &err) != BATON_OK) {
            snprintf(why, why_size, "prompt: %.400s", err.msg);
            return false;
        }
        if (req->n_prompt == 0) {
            snprintf(why, why_size, "prompt: encodes to no tokens");
            return false;
        }
    } else {
        if (m->n_prompt_tokens > lim->max_prompt_tokens) goto too_long;
        req->prompt = malloc(m->n_prompt_tokens * sizeof(int32_t));
        if (req->prompt == NULL) {
            snprintf(why, why_size, "out of memory for the prompt");
            return false;
        }
        req->n_prompt = m->n_prompt_tokens;
        for (size_t i = 0; i < m->n_prompt_tokens; i++) {
            if (m->prompt_tokens[i] < 0 || m->prompt_tokens[i] >= n_vocab) {
                snprintf(why, why_size, "prompt_tokens[%zu]: %d is outside [0, %d)", i,
                         m->prompt_tokens[i], n_vocab);
                return false;
            }
            req->prompt[i] = m->prompt_tokens[i];
        }
    }
    if (req->n_prompt > lim->max_prompt_tokens) goto too_long;

    baton_sampling *sp = &req->sampling;
    *sp = (baton_sampling){.temperature = 1.0f, .top_p = 0.85f};
    const Baton__V1__Sampling *ms = m->sampling;
    bool seeded = false;
    if (ms != NULL) {
        if (ms->temperature_set_case) sp->temperature = ms->temperature;
        if (ms->top_p_set_case) sp->top_p = ms->top_p;
        if (ms->top_k_set_case) sp->top_k = ms->top_k;
        if (ms->presence_penalty_set_case) sp->presence_penalty = ms->presence_penalty;
        if (ms->frequency_penalty_set_case) sp->frequency_penalty = ms->frequency_penalty;
        if (ms->seed_set_case) {
            req->seed = ms->seed;
            seeded = true;
        }
    }
    baton_error err = {0};
    if (baton_sampling_check(sp, &err) != BATON_OK) {
        snprintf(why, why_size, "sampling: %.400s", err.msg);
        return false;
    }
    if (!seeded && getrandom(&req->seed, sizeof req->seed, 0) != (ssize_t)sizeof req->seed)
        req->seed = (uint64_t)time(NULL) ^ (uint64_t)clock() ^ (uint64_t)(uintptr_t)req;

    req->gen.max_tokens = m->max_tokens_set_case ? m->max_tokens : 200;
    if (req->gen.max_tokens > lim->max_tokens) {
        snprintf(why, why_size, "max_tokens: %u is over this server's limit of %u",
                 req->gen.max_tokens, lim->max_tokens);
        return false;
    }
    if (m->n_stop > BATON_GEN_STOPS_MAX) {
        snprintf(why, why_size, "stop: %zu strings, at most %d", m->n_stop, BATON_GEN_STOPS_MAX);
        return false;
    }
    /* Stop strings must be whole UTF-8, so cutting the text at one never splits a character. */
    for (size_t i = 0; i < m->n_stop; i++) {
        size_t n = strlen(m->stop[i]);
        if (n == 0 || n > BATON_GEN_STOP_BYTES_MAX || !baton_utf8_valid(m->stop[i], n)) {
            snprintf(why, why_size, "stop[%zu]: must be 1 to %d bytes of valid UTF-8", i,
                     BATON_GEN_STOP_BYTES_MAX);
            return false;
        }
        memcpy(req->gen.stops[i], m->stop[i], n + 1);
    }
    req->gen.n_stops = (int)m->n_stop;
    if (m->n_stop_token_ids > BATON_GEN_STOP_IDS_MAX) {
        snprintf(why, why_size, "stop_token_ids: %zu ids, at most %d", m->n_stop_token_ids,
                 BATON_GEN_STOP_IDS_MAX);
        return false;
    }
    for (size_t i = 0; i < m->n_stop_token_ids; i++) {
        if (m->stop_token_ids[i] < 0 || m->stop_token_ids[i] >= n_vocab) {
            snprintf(why, why_size, "stop_token_ids[%zu]: %d is outside [0, %d)", i,
                     m->stop_token_ids[i], n_vocab);
            return false;
        }
        req->gen.stop_ids[i] = m->stop_token_ids[i];
    }
    req->gen.n_stop_ids = (int)m->n_stop_token_ids;
    if (req->gen.n_stop_ids == 0 && baton_tokenizer_eot(svc->tok) >= 0) {
        req->gen.stop_ids[0] = baton_tokenizer_eot(svc->tok);
        req->gen.n_stop_ids = 1;
    }
    return true;
too_long:
    snprintf(why, why_size, "the prompt has %zu tokens, over this server's limit of %u",
             req->n_prompt ? req->n_prompt : m->n_prompt_tokens, lim->max_prompt_tokens);
    return false;
}

/* Refuses calls while loading or stopped; true when the call was answered. */
static bool refuse_unready(baton_inference_service *svc, rpc_call *call) {
    int state = atomic_load(&svc->state);
    if (state == SERVICE_READY) return false;
    rpc_call_reply(call, NULL, GRPC_STATUS_UNAVAILABLE,
                   state == SERVICE_LOADING ? "the model is still loading"
                                            : "the server is shutting down");
    return true;
}

static void on_generate(void *ctx, rpc_call *call, grpc_byte_buffer *request) {
    baton_inference_service *svc = ctx;
    if (refuse_unready(svc, call)) return;
    if (atomic_load(&svc->unavailable)) {
        rpc_call_reply(call, NULL, GRPC_STATUS_UNAVAILABLE, "a pipeline node is down");
        return;
    }
    Baton__V1__GenerateRequest *m = (Baton__V1__GenerateRequest *)rpc_buffer_unpack(
        request, &baton__v1__generate_request__descriptor);
    if (m == NULL) {
        rpc_call_reply(call, NULL, GRPC_STATUS_INVALID_ARGUMENT, "malformed GenerateRequest");
        return;
    }
    baton_gen_request req;
    memset(&req, 0, sizeof req);
    char why[RPC_DETAILS_MAX];
    if (!generate_check(svc, m, &req, why, sizeof why)) {
        free(req.prompt);
        protobuf_c_message_free_unpacked(&m->base, NULL);
        rpc_call_reply(call, NULL, GRPC_STATUS_INVALID_ARGUMENT, why);
        return;
    }
    outbox *o = calloc(1, sizeof *o);
    if (o == NULL) {
        free(req.prompt);
        protobuf_c_message_free_unpacked(&m->base, NULL);
        rpc_call_reply(call, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    o->call = call;
    pthread_mutex_init(&o->mu, NULL);
    rpc_call_stream(call, &outbox_source, o);
    int64_t timeout_ms = (int64_t)svc->limits.generate_timeout_s * 1000;
    int64_t client_ms = rpc_call_deadline_ms(call);
    req.timeout_ms = client_ms < timeout_ms ? client_ms : timeout_ms;
    req.sink = &outbox_sink;
    req.user = o;
    baton_error err = {0};
    baton_status st = baton_scheduler_submit(svc->scheduler, &req, &err);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    if (st != BATON_OK) {
        free(req.prompt);
        rpc_call_reply(call, NULL,
                       st == BATON_ERR_NOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED
                                             : GRPC_STATUS_UNAVAILABLE,
                       err.msg);
    }
}

/* ---- the unary methods ---- */

static void on_tokenize(void *ctx, rpc_call *call, grpc_byte_buffer *request) {
    baton_inference_service *svc = ctx;
    if (refuse_unready(svc, call)) return;
    Baton__V1__TokenizeRequest *m = (Baton__V1__TokenizeRequest *)rpc_buffer_unpack(
        request, &baton__v1__tokenize_request__descriptor);
    if (m == NULL) {
        rpc_call_reply(call, NULL, GRPC_STATUS_INVALID_ARGUMENT, "malformed TokenizeRequest");
        return;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    baton_error err = {0};
    if (baton_tokenizer_encode(svc->tok, m->text, strlen(m->text), &ids, &n, &err) != BATON_OK) {
        rpc_call_reply(call, NULL, GRPC_STATUS_INVALID_ARGUMENT, err.msg);
    } else if (n * 5 > svc->limits.message_bytes_max) { /* a varint id takes up to 5 bytes */
        rpc_call_reply(call, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "the token ids would not fit in one message");
    } else {
        Baton__V1__TokenizeResponse resp = BATON__V1__TOKENIZE_RESPONSE__INIT;
        resp.n_token_ids = n;
        resp.token_ids = ids;
        rpc_call_reply(call, &resp.base, GRPC_STATUS_OK, "");
    }
    free(ids);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void on_detokenize(void *ctx, rpc_call *call, grpc_byte_buffer *request) {
    baton_inference_service *svc = ctx;
    if (refuse_unready(svc, call)) return;
    Baton__V1__DetokenizeRequest *m = (Baton__V1__DetokenizeRequest *)rpc_buffer_unpack(
        request, &baton__v1__detokenize_request__descriptor);
    if (m == NULL) {
        rpc_call_reply(call, NULL, GRPC_STATUS_INVALID_ARGUMENT, "malformed DetokenizeRequest");
        return;
    }
    char *text = NULL;
    size_t len = 0;
    baton_error err = {0};
    if (m->n_token_ids * BATON_TOKENIZER_TOKEN_BYTES_MAX > svc->limits.message_bytes_max * 64ull) {
        rpc_call_reply(call, NULL, GRPC_STATUS_INVALID_ARGUMENT, "too many token ids");
    } else if (baton_tokenizer_decode(svc->tok, m->token_ids, m->n_token_ids, &text, &len, &err) !=
               BATON_OK) {
        rpc_call_reply(call, NULL, GRPC_STATUS_INVALID_ARGUMENT, err.msg);
    } else if (len + 16 > svc->limits.message_bytes_max) {
        rpc_call_reply(call, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "the text would not fit in one message");
    } else {
        Baton__V1__DetokenizeResponse resp = BATON__V1__DETOKENIZE_RESPONSE__INIT;
        resp.text.data = (uint8_t *)text;
        resp.text.len = len;
        rpc_call_reply(call, &resp.base, GRPC_STATUS_OK, "");
    }
    free(text);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static const char *tokenizer_name(baton_tokenizer_kind kind) {
    switch (kind) {
    case BATON_TOKENIZER_BYTES: return "bytes";
    case BATON_TOKENIZER_BPE: return "bpe";
    case BATON_TOKENIZER_WORLD: return "world";
    }
    return "unknown";
}

/* VmRSS from /proc/self/status, in bytes; 0 when unknown. */
static uint64_t rss_bytes(void) { return baton_proc_kb("/proc/self/status", "VmRSS"); }

static void on_info(void *ctx, rpc_call *call, grpc_byte_buffer *request) {
    baton_inference_service *svc = ctx;
    (void)request;
    if (refuse_unready(svc, call)) return;
    const baton_model *mo = svc->model;
    Baton__V1__ModelInfo model = BATON__V1__MODEL_INFO__INIT;
    model.n_layer = (uint32_t)mo->n_layer;
    model.n_embd = (uint32_t)mo->n_embd;
    model.n_vocab = (uint32_t)mo->n_vocab;
    model.n_ffn = (uint32_t)mo->n_ffn;
    model.dtype = (char *)baton_dtype_name(mo->dtype);
    model.tokenizer = (char *)tokenizer_name(baton_tokenizer_get_kind(svc->tok));
    model.tokenizer_n_vocab = (uint32_t)baton_tokenizer_n_vocab(svc->tok);
    model.eot_token = baton_tokenizer_eot(svc->tok);
    Baton__V1__StageInfo stages[BATON_SERVICE_STAGES_MAX];
    Baton__V1__StageInfo *stage_ptrs[BATON_SERVICE_STAGES_MAX];
    for (int i = 0; i < svc->n_stages; i++) {
        const baton_stage_info *si = &svc->stages[i];
        stages[i] = (Baton__V1__StageInfo)BATON__V1__STAGE_INFO__INIT;
        stages[i].layer_begin = (uint32_t)si->layer_begin;
        stages[i].layer_end = (uint32_t)si->layer_end;
        stages[i].with_embedding = si->with_embedding;
        stages[i].with_head = si->with_head;
        stages[i].host = (char *)si->host;
        stages[i].device = (char *)si->device;
        stage_ptrs[i] = &stages[i];
    }
    const baton_service_limits *l = &svc->limits;
    Baton__V1__Limits limits = BATON__V1__LIMITS__INIT;
    limits.max_streams = (uint32_t)l->scheduler.max_streams;
    limits.max_queue = (uint32_t)l->scheduler.max_queue;
    limits.max_prompt_tokens = l->max_prompt_tokens;
    limits.max_tokens = l->max_tokens;
    limits.max_message_bytes = l->message_bytes_max;
    limits.prefill_chunk = (uint32_t)l->scheduler.prefill_chunk;
    limits.generate_timeout_s = l->generate_timeout_s;
    Baton__V1__InfoResponse resp = BATON__V1__INFO_RESPONSE__INIT;
    resp.model = &model;
    resp.n_stages = (size_t)svc->n_stages;
    resp.stages = stage_ptrs;
    resp.limits = &limits;
    baton_scheduler_stats t;
    baton_scheduler_stats_get(svc->scheduler, &t);
    Baton__V1__Load load = BATON__V1__LOAD__INIT;
    load.streams = (uint32_t)t.streams;
    load.queued = (uint32_t)t.queued;
    load.batch_mean = t.batch_mean;
    load.tokens_per_s = t.tokens_per_s;
    load.steps = t.steps;
    load.tokens_generated = t.tokens_generated;
    load.tokens_prefilled = t.tokens_prefilled;
    load.micro_batches = (uint32_t)t.micro_batches;
    load.micro_batches_target = (uint32_t)t.micro_batches_target;
    load.n_stage_ms = (size_t)t.n_stages;
    load.stage_ms = t.stage_ms;
    load.rss_bytes = rss_bytes();
    resp.load = &load;
    rpc_call_reply(call, &resp.base, GRPC_STATUS_OK, "");
}

static void on_health_check(void *ctx, rpc_call *call, grpc_byte_buffer *request) {
    baton_inference_service *svc = ctx;
    Grpc__Health__V1__HealthCheckRequest *m = (Grpc__Health__V1__HealthCheckRequest *)
        rpc_buffer_unpack(request, &grpc__health__v1__health_check_request__descriptor);
    if (m == NULL) {
        rpc_call_reply(call, NULL, GRPC_STATUS_INVALID_ARGUMENT, "malformed HealthCheckRequest");
        return;
    }
    /* "" is the server as a whole; the one service named is ours. */
    bool known = m->service[0] == '\0' || strcmp(m->service, "baton.v1.Inference") == 0;
    protobuf_c_message_free_unpacked(&m->base, NULL);
    if (!known) {
        rpc_call_reply(call, NULL, GRPC_STATUS_NOT_FOUND, "unknown service");
        return;
    }
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = atomic_load(&svc->state) == SERVICE_READY && !atomic_load(&svc->unavailable)
                      ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                      : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    rpc_call_reply(call, &resp.base, GRPC_STATUS_OK, "");
}

static void on_health_watch(void *ctx, rpc_call *call, grpc_byte_buffer *request) {
    (void)ctx;
    (void)request;
    rpc_call_reply(call, NULL, GRPC_STATUS_UNIMPLEMENTED, "Watch is not served; poll Check");
}

/* ---- life ---- */

baton_status baton_inference_service_new(const baton_service_limits *limits,
                                         baton_inference_service **out, baton_error *err) {
    *out = calloc(1, sizeof **out);
    if (*out == NULL) return baton_fail(err, BATON_ERR_NOMEM, "out of memory for the service");
    (*out)->limits = *limits;
    atomic_init(&(*out)->state, SERVICE_LOADING);
    atomic_init(&(*out)->unavailable, false);
    return BATON_OK;
}

void baton_inference_service_methods(baton_inference_service *svc, rpc_method *methods) {
    const rpc_method all[BATON_SERVICE_METHODS] = {
        {"/baton.v1.Inference/Generate", on_generate, svc},
        {"/baton.v1.Inference/Tokenize", on_tokenize, svc},
        {"/baton.v1.Inference/Detokenize", on_detokenize, svc},
        {"/baton.v1.Inference/Info", on_info, svc},
        {"/grpc.health.v1.Health/Check", on_health_check, svc},
        {"/grpc.health.v1.Health/Watch", on_health_watch, svc},
    };
    memcpy(methods, all, sizeof all);
}

void baton_inference_service_ready(baton_inference_service *svc, const baton_model *model,
                                   const baton_tokenizer *tok, baton_scheduler *scheduler,
                                   const baton_stage_info *stages, int n_stages) {
    if (n_stages > BATON_SERVICE_STAGES_MAX) n_stages = BATON_SERVICE_STAGES_MAX;
    svc->model = model;
    svc->tok = tok;
    svc->scheduler = scheduler;
    memcpy(svc->stages, stages, (size_t)n_stages * sizeof *stages);
    svc->n_stages = n_stages;
    atomic_store(&svc->state, SERVICE_READY); /* publishes the fields above */
}

void baton_inference_service_set_available(baton_inference_service *svc, bool available) {
    atomic_store(&svc->unavailable, !available);
}

void baton_inference_service_stop(baton_inference_service *svc) {
    atomic_store(&svc->state, SERVICE_STOPPED);
}

void baton_inference_service_free(baton_inference_service *svc) {
    free(svc);
}
