#include "rpc_server.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>

enum { POLL_MS = 200, STOP_WAIT_MS = 10000 };

typedef enum { TAG_NEW_CALL, TAG_RECV, TAG_CLOSE, TAG_SEND, TAG_SHUTDOWN } tag_kind;

typedef struct {
    tag_kind kind;
    rpc_call *call;
} rpc_tag;

struct rpc_call {
    rpc_server *server;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array request_metadata;
    grpc_byte_buffer *request;
    int close_cancelled;  /* written by RECV_CLOSE_ON_SERVER */
    atomic_bool cancelled;
    rpc_tag tag_new, tag_recv, tag_close, tag_send;

    pthread_mutex_t mu;   /* guards what follows */
    int refs;             /* batches in flight + the handler's or producer's */
    bool sending;         /* a send batch is in flight, or a thread is taking from the source */
    bool dirty;           /* woken since the source was last asked */
    bool initial_sent;
    bool finished;        /* the status batch was started */
    grpc_byte_buffer *send_buffer;
    const rpc_source *source;
    void *user;
};

struct rpc_server {
    grpc_server *server;
    grpc_completion_queue *cq;
    pthread_t thread;
    bool thread_started;
    rpc_method methods[RPC_METHODS_MAX];
    int n_methods;
    rpc_call *pending;    /* the call slot waiting in grpc_server_request_call */
    rpc_tag tag_shutdown;

    pthread_mutex_t mu;   /* guards what follows */
    pthread_cond_t cond;
    bool stopping, shutdown_done, stopped;
    int live_calls;
};

static void server_request_call(rpc_server *s);

static void call_free(rpc_call *c) {
    rpc_server *s = c->server;
    if (c->source != NULL && c->source->free != NULL) c->source->free(c->user);
    if (c->send_buffer != NULL) grpc_byte_buffer_destroy(c->send_buffer);
    if (c->request != NULL) grpc_byte_buffer_destroy(c->request);
    if (c->call != NULL) grpc_call_unref(c->call);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->request_metadata);
    pthread_mutex_destroy(&c->mu);
    free(c);
    pthread_mutex_lock(&s->mu);
    s->live_calls--;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

static void call_unref(rpc_call *c) {
    pthread_mutex_lock(&c->mu);
    int refs = --c->refs;
    pthread_mutex_unlock(&c->mu);
    if (refs == 0) call_free(c);
}

/* Starts a batch on the call; on failure (our mistake, not the client's) logs and returns
 * false. Holding c->mu. */
static bool call_batch(rpc_call *c, const grpc_op *ops, size_t n, rpc_tag *tag) {
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
    if (e == GRPC_CALL_OK) return true;
    fprintf(stderr, "baton rpc: start_batch: %s\n", grpc_call_error_to_string(e));
    return false;
}

/* Starts the send of out (a message, a status, or both). Holding c->mu; takes a ref. */
static void call_send(rpc_call *c, rpc_out *out) {
    grpc_op ops[3];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!c->initial_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->initial_sent = true;
    }
    if (out->message != NULL) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = out->message;
        c->send_buffer = out->message;
    }
    grpc_slice details = grpc_empty_slice();
    if (out->last) {
        details = grpc_slice_from_copied_string(out->details);
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = out->code;
        ops[n++].data.send_status_from_server.status_details = &details;
        c->finished = true;
    }
    c->sending = true;
    c->refs++;
    if (!call_batch(c, ops, n, &c->tag_send)) {
        c->refs--;
        c->sending = false;
        c->finished = true;
        if (c->send_buffer != NULL) grpc_byte_buffer_destroy(c->send_buffer);
        c->send_buffer = NULL;
    }
    grpc_slice_unref(details);
}

/* Asks the source for the next message until it gives one or has nothing; one asker at a time.
 * The source is asked without c->mu held, so it may take its own locks. */
static void call_pump(rpc_call *c) {
    pthread_mutex_lock(&c->mu);
    c->dirty = true;
    if (c->sending || c->finished || c->source == NULL) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    c->sending = true;
    for (;;) {
        c->dirty = false;
        pthread_mutex_unlock(&c->mu);
        rpc_out out;
        memset(&out, 0, sizeof out);
        c->source->take(c->user, &out);
        pthread_mutex_lock(&c->mu);
        if (out.message != NULL || out.last) {
            call_send(c, &out);
            break;
        }
        if (!c->dirty) {
            c->sending = false;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

void rpc_call_wake(rpc_call *call) {
    call_pump(call);
}

void rpc_call_reply(rpc_call *call, const ProtobufCMessage *message, grpc_status_code code,
                    const char *details) {
    rpc_out out = {.last = true, .code = code};
    snprintf(out.details, sizeof out.details, "%s", details != NULL ? details : "");
    if (message != NULL) {
        out.message = rpc_buffer_pack(message);
        if (out.message == NULL) {
            out.code = GRPC_STATUS_RESOURCE_EXHAUSTED;
            snprintf(out.details, sizeof out.details, "out of memory for the reply");
        }
    }
    pthread_mutex_lock(&call->mu);
    if (!call->finished && !call->sending) call_send(call, &out);
    else if (out.message != NULL) grpc_byte_buffer_destroy(out.message);
    pthread_mutex_unlock(&call->mu);
    call_unref(call);
}

void rpc_call_stream(rpc_call *call, const rpc_source *source, void *user) {
    pthread_mutex_lock(&call->mu);
    call->source = source;
    call->user = user;
    pthread_mutex_unlock(&call->mu);
}

void rpc_call_release(rpc_call *call) {
    call_unref(call);
}

bool rpc_call_cancelled(const rpc_call *call) {
    return atomic_load(&call->cancelled);
}

int64_t rpc_call_deadline_ms(const rpc_call *call) {
    gpr_timespec d = call->details.deadline;
    if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0) return INT64_MAX;
    d = gpr_convert_clock_type(d, GPR_CLOCK_MONOTONIC);
    return gpr_time_to_millis(gpr_time_sub(d, gpr_now(GPR_CLOCK_MONOTONIC)));
}

static rpc_call *call_new(rpc_server *s) {
    rpc_call *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->server = s;
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->request_metadata);
    pthread_mutex_init(&c->mu, NULL);
    atomic_init(&c->cancelled, false);
    c->tag_new = (rpc_tag){TAG_NEW_CALL, c};
    c->tag_recv = (rpc_tag){TAG_RECV, c};
    c->tag_close = (rpc_tag){TAG_CLOSE, c};
    c->tag_send = (rpc_tag){TAG_SEND, c};
    pthread_mutex_lock(&s->mu);
    s->live_calls++;
    pthread_mutex_unlock(&s->mu);
    return c;
}

/* Asks gRPC for the next call (unless stopping). */
static void server_request_call(rpc_server *s) {
    pthread_mutex_lock(&s->mu);
    bool stopping = s->stopping;
    pthread_mutex_unlock(&s->mu);
    if (stopping) return;
    rpc_call *c = call_new(s);
    if (c == NULL) {
        /* Without memory for a call slot we take no more calls; the ones running go on. */
        fprintf(stderr, "baton rpc: out of memory; taking no new calls\n");
        return;
    }
    grpc_call_error e = grpc_server_request_call(s->server, &c->call, &c->details,
                                                 &c->request_metadata, s->cq, s->cq, &c->tag_new);
    if (e != GRPC_CALL_OK) {
        fprintf(stderr, "baton rpc: request_call: %s\n", grpc_call_error_to_string(e));
        call_free(c);
        return;
    }
    s->pending = c;
}

static void on_new_call(rpc_server *s, rpc_call *c, bool ok) {
    s->pending = NULL;
    if (!ok) { /* the server is shutting down */
        call_free(c);
        return;
    }
    server_request_call(s);
    /* One ref for the RECV_CLOSE batch, one for the RECV_MESSAGE batch (then the handler's). */
    c->refs = 2;
    grpc_op close_op = {.op = GRPC_OP_RECV_CLOSE_ON_SERVER};
    close_op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    grpc_op recv_op = {.op = GRPC_OP_RECV_MESSAGE};
    recv_op.data.recv_message.recv_message = &c->request;
    pthread_mutex_lock(&c->mu);
    if (!call_batch(c, &close_op, 1, &c->tag_close)) c->refs--;
    if (!call_batch(c, &recv_op, 1, &c->tag_recv)) c->refs--;
    int refs = c->refs;
    pthread_mutex_unlock(&c->mu);
    if (refs == 0) call_free(c);
}

static void on_request(rpc_server *s, rpc_call *c) {
    /* The RECV_MESSAGE ref becomes the handler's. */
    for (int i = 0; i < s->n_methods; i++) {
        if (grpc_slice_str_cmp(c->details.method, s->methods[i].method) == 0) {
            if (c->request == NULL) {
                rpc_call_reply(c, NULL, GRPC_STATUS_INVALID_ARGUMENT, "no request message");
                return;
            }
            s->methods[i].handle(s->methods[i].ctx, c, c->request);
            return;
        }
    }
    rpc_call_reply(c, NULL, GRPC_STATUS_UNIMPLEMENTED, "no such method on this server");
}

static void on_send_done(rpc_call *c) {
    pthread_mutex_lock(&c->mu);
    c->sending = false;
    if (c->send_buffer != NULL) grpc_byte_buffer_destroy(c->send_buffer);
    c->send_buffer = NULL;
    pthread_mutex_unlock(&c->mu);
    call_pump(c);
    call_unref(c);
}

static void *server_thread(void *arg) {
    rpc_server *s = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, rpc_deadline_ms(POLL_MS), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type == GRPC_QUEUE_TIMEOUT) continue;
        rpc_tag *tag = ev.tag;
        switch (tag->kind) {
        case TAG_NEW_CALL: on_new_call(s, tag->call, ev.success != 0); break;
        case TAG_RECV: on_request(s, tag->call); break;
        case TAG_CLOSE:
            if (tag->call->close_cancelled) atomic_store(&tag->call->cancelled, true);
            call_unref(tag->call);
            break;
        case TAG_SEND: on_send_done(tag->call); break;
        case TAG_SHUTDOWN:
            pthread_mutex_lock(&s->mu);
            s->shutdown_done = true;
            pthread_cond_broadcast(&s->cond);
            pthread_mutex_unlock(&s->mu);
            grpc_completion_queue_shutdown(s->cq);
            break;
        }
    }
    return NULL;
}

/* Shuts down and frees a server whose thread never ran, draining its queue here. */
static void server_abandon(rpc_server *s) {
    s->stopping = true;
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->tag_shutdown);
    for (int waited_ms = 0; waited_ms < STOP_WAIT_MS; waited_ms += POLL_MS) {
        grpc_event ev = grpc_completion_queue_next(s->cq, rpc_deadline_ms(POLL_MS), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type != GRPC_OP_COMPLETE) continue;
        rpc_tag *tag = ev.tag;
        if (tag->kind == TAG_NEW_CALL) call_free(tag->call);
        if (tag->kind == TAG_SHUTDOWN) grpc_completion_queue_shutdown(s->cq);
    }
    s->stopped = true;
    grpc_server_destroy(s->server);
    grpc_completion_queue_destroy(s->cq);
    s->server = NULL;
    s->cq = NULL;
    rpc_server_free(s);
}

baton_status rpc_server_start(const char *addr, const rpc_limits *limits,
                              const rpc_method *methods, int n_methods, rpc_server **out,
                              int *port, baton_error *err) {
    *out = NULL;
    if (n_methods > RPC_METHODS_MAX)
        return baton_fail(err, BATON_ERR_ARG, "%d methods, at most %d", n_methods, RPC_METHODS_MAX);
    rpc_server *s = calloc(1, sizeof *s);
    if (s == NULL) return baton_fail(err, BATON_ERR_NOMEM, "out of memory for the server");
    memcpy(s->methods, methods, (size_t)n_methods * sizeof *methods);
    s->n_methods = n_methods;
    s->tag_shutdown = (rpc_tag){TAG_SHUTDOWN, NULL};
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    rpc_acquire();

    rpc_channel_args args;
    rpc_channel_args_fill(&args, limits, true);
    s->server = grpc_server_create(&args.list, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int bound = grpc_server_add_http2_port(s->server, addr, creds);
    grpc_server_credentials_release(creds);
    grpc_server_start(s->server);
    if (bound == 0) {
        server_abandon(s);
        return baton_fail(err, BATON_ERR_IO, "cannot listen on %s (bad address or port in use)",
                          addr);
    }
    server_request_call(s);
    if (pthread_create(&s->thread, NULL, server_thread, s) != 0) {
        server_abandon(s);
        return baton_fail(err, BATON_ERR_NOMEM, "cannot start the server thread");
    }
    s->thread_started = true;
    if (port != NULL) *port = bound;
    *out = s;
    return BATON_OK;
}

/* Waits until pred holds or ms pass; returns pred. Holding s->mu. */
static bool server_wait(rpc_server *s, bool (*pred)(const rpc_server *), int ms) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (!pred(s)) {
        if (pthread_cond_timedwait(&s->cond, &s->mu, &until) != 0) return pred(s);
    }
    return true;
}

static bool is_shutdown(const rpc_server *s) {
    return s->shutdown_done;
}

static bool no_calls(const rpc_server *s) {
    return s->live_calls == 0;
}

bool rpc_server_stop(rpc_server *s, int grace_ms) {
    pthread_mutex_lock(&s->mu);
    if (s->stopped || s->server == NULL) {
        bool clean = !s->thread_started;
        pthread_mutex_unlock(&s->mu);
        return clean;
    }
    s->stopping = true;
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->tag_shutdown);
    if (!server_wait(s, is_shutdown, grace_ms)) {
        grpc_server_cancel_all_calls(s->server);
        if (!server_wait(s, is_shutdown, STOP_WAIT_MS))
            fprintf(stderr, "baton rpc: calls still open %d s after cancelling them\n",
                    STOP_WAIT_MS / 1000);
    }
    server_wait(s, no_calls, STOP_WAIT_MS);
    bool clean = s->shutdown_done;
    s->stopped = true;
    pthread_mutex_unlock(&s->mu);
    if (clean && s->thread_started) {
        pthread_join(s->thread, NULL);
        s->thread_started = false;
    }
    return clean;
}

void rpc_server_free(rpc_server *s) {
    if (s == NULL) return;
    if (s->server != NULL) rpc_server_stop(s, 0);
    if (s->thread_started) {
        /* Shutdown never completed: leave gRPC's objects alone rather than free them in use. */
        fprintf(stderr, "baton rpc: the server did not stop; leaving it to the process exit\n");
        return;
    }
    if (s->server != NULL) grpc_server_destroy(s->server);
    if (s->cq != NULL) grpc_completion_queue_destroy(s->cq);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
    rpc_release();
}
