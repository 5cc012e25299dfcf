#include "rpc.h"

#include <pthread.h>
#include <stdlib.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>

rpc_limits rpc_limits_default(void) {
    return (rpc_limits){
        .message_bytes_max = RPC_MESSAGE_BYTES_DEFAULT,
        .keepalive_time_ms = 30000,
        .keepalive_timeout_ms = 10000,
        .streams_per_connection_max = 64,
    };
}

static grpc_arg int_arg(const char *key, int value) {
    grpc_arg a = {.type = GRPC_ARG_INTEGER, .key = (char *)key};
    a.value.integer = value;
    return a;
}

void rpc_channel_args_fill(rpc_channel_args *out, const rpc_limits *limits, bool server) {
    size_t n = 0;
    out->args[n++] = int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, limits->message_bytes_max);
    out->args[n++] = int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, limits->message_bytes_max);
    out->args[n++] = int_arg(GRPC_ARG_KEEPALIVE_TIME_MS, limits->keepalive_time_ms);
    out->args[n++] = int_arg(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, limits->keepalive_timeout_ms);
    out->args[n++] = int_arg(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    out->args[n++] = int_arg(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    if (server) {
        out->args[n++] = int_arg(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                                 limits->streams_per_connection_max);
        /* Let clients ping as often as our own keepalive does, without being cut off. */
        out->args[n++] = int_arg(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                                 limits->keepalive_time_ms / 2);
        /* Two servers must never share a port by accident. */
        out->args[n++] = int_arg(GRPC_ARG_ALLOW_REUSEPORT, 0);
    }
    out->list.num_args = n;
    out->list.args = out->args;
}

static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static int init_users;

void rpc_acquire(void) {
    pthread_mutex_lock(&init_mu);
    if (init_users++ == 0) grpc_init();
    pthread_mutex_unlock(&init_mu);
}

void rpc_release(void) {
    pthread_mutex_lock(&init_mu);
    if (--init_users == 0) grpc_shutdown();
    pthread_mutex_unlock(&init_mu);
}

grpc_byte_buffer *rpc_buffer_pack(const ProtobufCMessage *message) {
    size_t size = protobuf_c_message_get_packed_size(message);
    grpc_slice slice = grpc_slice_malloc(size);
    protobuf_c_message_pack(message, GRPC_SLICE_START_PTR(slice));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return bb;
}

ProtobufCMessage *rpc_buffer_unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc) {
    if (bb == NULL) return NULL;
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, bb)) return NULL;
    grpc_slice slice = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(slice),
                                                    GRPC_SLICE_START_PTR(slice));
    grpc_slice_unref(slice);
    return m;
}

gpr_timespec rpc_deadline_ms(int64_t ms_from_now) {
    if (ms_from_now < 0) return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms_from_now, GPR_TIMESPAN));
}

const char *rpc_status_name(grpc_status_code code) {
    static const char *const names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    if (code >= 0 && (size_t)code < sizeof names / sizeof names[0]) return names[code];
    return "UNKNOWN_CODE";
}
