/* What the gRPC server and client share: process-wide set-up, limits turned into channel
 * arguments, protobuf-c messages to and from gRPC byte buffers, deadlines.
 *
 * Built on gRPC's C core (grpc/grpc.h): completion queues and batches, nothing from C++. */
#ifndef BATON_RPC_H
#define BATON_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

/* Limits both ends apply to a connection. */
typedef struct {
    int message_bytes_max;    /* largest message sent or received; past it the call fails */
    int keepalive_time_ms;    /* ping an idle connection this often, to find dead peers */
    int keepalive_timeout_ms; /* a ping unanswered this long closes the connection */
    int streams_per_connection_max; /* server: concurrent calls on one connection */
} rpc_limits;

enum { RPC_MESSAGE_BYTES_DEFAULT = 4 << 20 };

/* 4 MiB messages, keepalive every 30 s with a 10 s timeout, 64 calls per connection. */
rpc_limits rpc_limits_default(void);

enum { RPC_CHANNEL_ARGS_MAX = 12 };
typedef struct {
    grpc_arg args[RPC_CHANNEL_ARGS_MAX];
    grpc_channel_args list;
} rpc_channel_args;

/* Fills out with the arguments for limits; server selects the server-side ones. */
void rpc_channel_args_fill(rpc_channel_args *out, const rpc_limits *limits, bool server);

/* grpc_init once per user; rpc_release pairs with rpc_acquire. Thread-safe. */
void rpc_acquire(void);
void rpc_release(void);

/* Serializes message into a new byte buffer (the caller destroys it); NULL when out of memory. */
grpc_byte_buffer *rpc_buffer_pack(const ProtobufCMessage *message);

/* Parses a received buffer as a message of desc; NULL when malformed or bb is NULL. Free with
 * protobuf_c_message_free_unpacked(message, NULL). */
ProtobufCMessage *rpc_buffer_unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc);

/* A deadline ms_from_now milliseconds ahead on the monotonic clock; negative: none. */
gpr_timespec rpc_deadline_ms(int64_t ms_from_now);

/* The status name, e.g. "INVALID_ARGUMENT". Never NULL. */
const char *rpc_status_name(grpc_status_code code);

#endif
