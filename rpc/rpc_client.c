#include "rpc_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>

/* gRPC ends a call at its deadline itself; this margin only bounds our wait for it to say so. */
enum { DEADLINE_MARGIN_MS = 5000 };

struct rpc_channel {
    grpc_channel *channel;
};

baton_status rpc_channel_open(const char *target, const rpc_limits *limits, rpc_channel **out,
                              baton_error *err) {
    *out = NULL;
    rpc_channel *ch = calloc(1, sizeof *ch);
    if (ch == NULL) return baton_fail(err, BATON_ERR_NOMEM, "out of memory for a channel");
    rpc_acquire();
    rpc_channel_args args;
    rpc_channel_args_fill(&args, limits, false);
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    ch->channel = grpc_channel_create(target, creds, &args.list);
    grpc_channel_credentials_release(creds);
    if (ch->channel == NULL) {
        free(ch);
        rpc_release();
        return baton_fail(err, BATON_ERR_ARG, "cannot make a channel to '%s'", target);
    }
    *out = ch;
    return BATON_OK;
}

void rpc_channel_free(rpc_channel *ch) {
    if (ch == NULL) return;
    grpc_channel_destroy(ch->channel);
    free(ch);
    rpc_release();
}

static void status_set(rpc_status *st, grpc_status_code code, grpc_slice details) {
    st->code = code;
    size_t n = GRPC_SLICE_LENGTH(details);
    if (n >= sizeof st->message) n = sizeof st->message - 1;
    memcpy(st->message, GRPC_SLICE_START_PTR(details), n);
    st->message[n] = '\0';
}

static void status_local(rpc_status *st, grpc_status_code code, const char *message) {
    st->code = code;
    snprintf(st->message, sizeof st->message, "%s", message);
}

/* Waits for tag on a pluck queue until deadline_ms (monotonic, absolute) plus the margin. */
static bool pluck(grpc_completion_queue *cq, void *tag, gpr_timespec deadline) {
    gpr_timespec until = gpr_time_add(deadline, gpr_time_from_millis(DEADLINE_MARGIN_MS, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_pluck(cq, tag, until, NULL);
    return ev.type == GRPC_OP_COMPLETE;
}

/* Shuts a pluck queue down and destroys it once empty. */
static void cq_close(grpc_completion_queue *cq) {
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, rpc_deadline_ms(DEADLINE_MARGIN_MS), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
}

static grpc_call *call_create(rpc_channel *ch, const char *method, grpc_completion_queue *cq,
                              gpr_timespec deadline) {
    grpc_slice m = grpc_slice_from_copied_string(method);
    grpc_call *call = grpc_channel_create_call(ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m,
                                               NULL, deadline, NULL);
    grpc_slice_unref(m);
    return call;
}

bool rpc_call_unary(rpc_channel *ch, const char *method, const ProtobufCMessage *request,
                    const ProtobufCMessageDescriptor *response_desc, int64_t timeout_ms,
                    ProtobufCMessage **response, rpc_status *st) {
    *response = NULL;
    grpc_byte_buffer *req = rpc_buffer_pack(request);
    if (req == NULL) {
        status_local(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for the request");
        return false;
    }
    gpr_timespec deadline = rpc_deadline_ms(timeout_ms);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_call *call = call_create(ch, method, cq, deadline);
    grpc_metadata_array initial_md, trailing_md;
    grpc_metadata_array_init(&initial_md);
    grpc_metadata_array_init(&trailing_md);
    grpc_byte_buffer *resp = NULL;
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = req;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &resp;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;
    ops[5].data.recv_status_on_client.status = &code;
    ops[5].data.recv_status_on_client.status_details = &details;
    bool ok = false;
    if (grpc_call_start_batch(call, ops, 6, (void *)1, NULL) != GRPC_CALL_OK) {
        status_local(st, GRPC_STATUS_INTERNAL, "cannot start the call");
    } else if (!pluck(cq, (void *)1, deadline)) {
        grpc_call_cancel(call, NULL);
        pluck(cq, (void *)1, rpc_deadline_ms(0));
        status_local(st, GRPC_STATUS_DEADLINE_EXCEEDED, "no answer in time");
    } else {
        status_set(st, code, details);
        if (code == GRPC_STATUS_OK) {
            *response = rpc_buffer_unpack(resp, response_desc);
            if (*response == NULL) status_local(st, GRPC_STATUS_INTERNAL, "malformed response");
            ok = *response != NULL;
        }
    }
    if (resp != NULL) grpc_byte_buffer_destroy(resp);
    grpc_byte_buffer_destroy(req);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial_md);
    grpc_metadata_array_destroy(&trailing_md);
    grpc_call_unref(call);
    cq_close(cq);
    return ok;
}

struct rpc_stream {
    grpc_completion_queue *cq;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_byte_buffer *request;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code code;
    grpc_slice details;
    bool got_initial;    /* RECV_INITIAL_METADATA was asked (with the first message) */
    bool status_pending; /* the RECV_STATUS batch has not completed */
    bool ended;
    rpc_status status;
};

/* Tags: 1 the opening batch, 2 a message, 3 the status. */
#define TAG_OPEN ((void *)1)
#define TAG_MESSAGE ((void *)2)
#define TAG_STATUS ((void *)3)

rpc_stream *rpc_stream_open(rpc_channel *ch, const char *method, const ProtobufCMessage *request,
                            int64_t timeout_ms) {
    rpc_stream *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    s->request = rpc_buffer_pack(request);
    s->deadline = rpc_deadline_ms(timeout_ms);
    s->cq = grpc_completion_queue_create_for_pluck(NULL);
    s->call = call_create(ch, method, s->cq, s->deadline);
    s->details = grpc_empty_slice();
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
    /* The server sends its initial metadata with the first message, which may take long (a
     * queued stream): wait for the request to be sent only. */
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->request;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    grpc_op status_op = {.op = GRPC_OP_RECV_STATUS_ON_CLIENT};
    status_op.data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    status_op.data.recv_status_on_client.status = &s->code;
    status_op.data.recv_status_on_client.status_details = &s->details;
    if (s->request == NULL || grpc_call_start_batch(s->call, ops, 3, TAG_OPEN, NULL) != GRPC_CALL_OK ||
        grpc_call_start_batch(s->call, &status_op, 1, TAG_STATUS, NULL) != GRPC_CALL_OK) {
        status_local(&s->status, GRPC_STATUS_INTERNAL, "cannot start the call");
        s->ended = true;
        return s;
    }
    s->status_pending = true;
    if (!pluck(s->cq, TAG_OPEN, s->deadline)) {
        grpc_call_cancel(s->call, NULL);
        pluck(s->cq, TAG_OPEN, rpc_deadline_ms(0));
    }
    return s;
}

/* Waits for the status (the call is over or cancelled). */
static void stream_end(rpc_stream *s) {
    if (!s->ended && s->status_pending) {
        if (pluck(s->cq, TAG_STATUS, s->deadline)) {
            status_set(&s->status, s->code, s->details);
        } else {
            grpc_call_cancel(s->call, NULL);
            pluck(s->cq, TAG_STATUS, rpc_deadline_ms(0));
            status_local(&s->status, GRPC_STATUS_DEADLINE_EXCEEDED, "no status in time");
        }
        s->status_pending = false;
    }
    s->ended = true;
}

ProtobufCMessage *rpc_stream_next(rpc_stream *s, const ProtobufCMessageDescriptor *desc) {
    if (s->ended) return NULL;
    grpc_byte_buffer *bb = NULL;
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!s->got_initial) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
        s->got_initial = true;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &bb;
    if (grpc_call_start_batch(s->call, ops, n, TAG_MESSAGE, NULL) != GRPC_CALL_OK) {
        stream_end(s);
        return NULL;
    }
    if (!pluck(s->cq, TAG_MESSAGE, s->deadline)) {
        grpc_call_cancel(s->call, NULL);
        pluck(s->cq, TAG_MESSAGE, rpc_deadline_ms(0));
    }
    if (bb == NULL) {
        stream_end(s);
        return NULL;
    }
    ProtobufCMessage *m = rpc_buffer_unpack(bb, desc);
    grpc_byte_buffer_destroy(bb);
    if (m == NULL) {
        grpc_call_cancel(s->call, NULL);
        stream_end(s);
        status_local(&s->status, GRPC_STATUS_INTERNAL, "malformed message from the server");
    }
    return m;
}

const rpc_status *rpc_stream_status(const rpc_stream *s) {
    return &s->status;
}

void rpc_stream_free(rpc_stream *s) {
    if (s == NULL) return;
    if (s->status_pending) {
        grpc_call_cancel(s->call, NULL);
        pluck(s->cq, TAG_STATUS, rpc_deadline_ms(0));
    }
    if (s->request != NULL) grpc_byte_buffer_destroy(s->request);
    grpc_slice_unref(s->details);
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    grpc_call_unref(s->call);
    cq_close(s->cq);
    free(s);
}
