/* A gRPC server on the C core: one thread runs the completion queue, hands each request to the
 * method's handler, and sends what handlers give back, from any thread.
 *
 * A call's life: the server thread receives the request and calls the handler, which owns one
 * reference to the call. A unary handler answers with rpc_call_reply (now or later, from any
 * thread), which ends its reference. A streaming handler attaches a source with
 * rpc_call_stream; then whoever has something new calls rpc_call_wake, the server pulls messages
 * from the source one send at a time (so a slow client holds back, never piles up, what it is
 * sent), and the producer ends its reference with rpc_call_release once it has given the last
 * message. The client going away (cancel, deadline, lost connection) is seen through
 * RECV_CLOSE_ON_SERVER and shows in rpc_call_cancelled.
 *
 * Nothing a client sends can stop the server: a malformed request is the handler's to refuse, an
 * unknown method gets UNIMPLEMENTED. */
#ifndef BATON_RPC_SERVER_H
#define BATON_RPC_SERVER_H

#include "rpc.h"
#include "status.h"

typedef struct rpc_server rpc_server;
typedef struct rpc_call rpc_call;

/* Runs on the server thread and must not block: request is the received message (NULL when the
 * client sent none), owned by the server and valid during the call only. */
typedef void (*rpc_handler)(void *ctx, rpc_call *call, grpc_byte_buffer *request);

typedef struct {
    const char *method; /* the full path, "/baton.v1.Inference/Generate" */
    rpc_handler handle;
    void *ctx;
} rpc_method;

enum { RPC_METHODS_MAX = 16, RPC_DETAILS_MAX = 512 };

/* What a source gives when asked for the next message. */
typedef struct {
    grpc_byte_buffer *message; /* NULL: nothing now (or a last status without a message);
                                  the server destroys it once sent */
    bool last;                 /* end the call with code and details after message */
    grpc_status_code code;
    char details[RPC_DETAILS_MAX];
} rpc_out;

typedef struct {
    /* Fills out (zeroed) with what is ready. Called by one thread at a time, any thread. */
    void (*take)(void *user, rpc_out *out);
    /* Frees user when the call is destroyed; may be NULL. */
    void (*free)(void *user);
} rpc_source;

/* Binds addr ("127.0.0.1:0" picks a free port; *port gets the one bound), starts the server
 * thread and begins taking calls. methods are copied. */
baton_status rpc_server_start(const char *addr, const rpc_limits *limits,
                              const rpc_method *methods, int n_methods, rpc_server **out,
                              int *port, baton_error *err);

/* Takes no more calls, gives the calls running grace_ms to end, then cancels the rest, and
 * stops the thread. Producers must have released their calls or be about to. Idempotent.
 * Returns false when gRPC did not finish within a bounded wait after that: the thread may still
 * run handlers, so their context must not be freed (leave it to the process exit). */
bool rpc_server_stop(rpc_server *server, int grace_ms);

/* Stops (with no grace) if not stopped, and frees (not when the stop was not clean).
 * NULL is a no-op. */
void rpc_server_free(rpc_server *server);

/* Answers a unary call with message (may be NULL) and status, and ends the handler's
 * reference. Any thread; once per call; not after rpc_call_stream. */
void rpc_call_reply(rpc_call *call, const ProtobufCMessage *message, grpc_status_code code,
                    const char *details);

/* Makes source the call's producer of messages; the handler's reference passes to the
 * producer. user lives until the call is destroyed (source->free). */
void rpc_call_stream(rpc_call *call, const rpc_source *source, void *user);

/* Tells the server the source has something new. Any thread; cheap when a send is in flight. */
void rpc_call_wake(rpc_call *call);

/* Ends the producer's reference (after its last message was given, or when giving up). */
void rpc_call_release(rpc_call *call);

/* True once the client has gone away (cancelled, deadline passed, connection lost). */
bool rpc_call_cancelled(const rpc_call *call);

/* Milliseconds left until the client's deadline (<= 0: passed); INT64_MAX when it set none. */
int64_t rpc_call_deadline_ms(const rpc_call *call);

#endif
