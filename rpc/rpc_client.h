/* gRPC client calls on the C core, each with a deadline: unary calls, and server-streaming calls
 * read one message at a time. Every wait is bounded by the call's deadline (plus a small margin
 * for gRPC to report it). A channel may be shared by threads; a stream belongs to one thread. */
#ifndef BATON_RPC_CLIENT_H
#define BATON_RPC_CLIENT_H

#include "rpc.h"
#include "status.h"

typedef struct rpc_channel rpc_channel;
typedef struct rpc_stream rpc_stream;

/* The outcome of a call as the server (or gRPC, for transport failures) gave it. */
typedef struct {
    grpc_status_code code;
    char message[512];
} rpc_status;

/* Opens an insecure channel to target ("host:port"). Connects lazily, on the first call. */
baton_status rpc_channel_open(const char *target, const rpc_limits *limits, rpc_channel **out,
                              baton_error *err);
void rpc_channel_free(rpc_channel *channel);

/* Calls method with request and waits at most timeout_ms for the reply. Returns true with
 * *response (of response_desc; free with protobuf_c_message_free_unpacked) when the status is
 * OK; otherwise false, *response NULL and status says what went wrong. */
bool rpc_call_unary(rpc_channel *channel, const char *method, const ProtobufCMessage *request,
                    const ProtobufCMessageDescriptor *response_desc, int64_t timeout_ms,
                    ProtobufCMessage **response, rpc_status *status);

/* Starts a server-streaming call that must end within timeout_ms. NULL when out of memory. */
rpc_stream *rpc_stream_open(rpc_channel *channel, const char *method,
                            const ProtobufCMessage *request, int64_t timeout_ms);

/* The next message (free with protobuf_c_message_free_unpacked), or NULL at the end of the
 * stream, after which rpc_stream_status tells how it ended. */
ProtobufCMessage *rpc_stream_next(rpc_stream *stream, const ProtobufCMessageDescriptor *desc);

/* How the stream ended; valid once rpc_stream_next returned NULL. */
const rpc_status *rpc_stream_status(const rpc_stream *stream);

/* Cancels the call if it is still running, and frees. NULL is a no-op. */
void rpc_stream_free(rpc_stream *stream);

#endif
