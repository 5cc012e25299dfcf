/* The baton.v1.Inference service and grpc.health.v1.Health over a scheduler: requests are
 * checked here (a bad one gets INVALID_ARGUMENT naming the field), turned into streams for the
 * scheduler, and the streams' output is sent back as GenerateResponse messages.
 *
 * The service exists before the model is loaded, so the server can listen (and answer Health
 * with NOT_SERVING) while a large model loads; baton_inference_service_ready makes it serve. */
#ifndef BATON_INFERENCE_SERVICE_H
#define BATON_INFERENCE_SERVICE_H

#include "rpc_server.h"
#include "scheduler.h"

typedef struct {
    uint32_t max_prompt_tokens;
    uint32_t max_tokens;           /* the largest max_tokens a request may ask */
    uint32_t generate_timeout_s;   /* the deadline of a Generate whose client set none */
    uint32_t message_bytes_max;
    baton_scheduler_limits scheduler;
} baton_service_limits;

/* One pipeline stage as Info reports it. */
typedef struct {
    int layer_begin, layer_end;
    bool with_embedding, with_head;
    char host[128];   /* empty: in this process */
    char device[128]; /* the backend's name */
} baton_stage_info;

enum { BATON_SERVICE_STAGES_MAX = 64, BATON_SERVICE_METHODS = 6 };

typedef struct baton_inference_service baton_inference_service;

baton_status baton_inference_service_new(const baton_service_limits *limits,
                                         baton_inference_service **out, baton_error *err);

/* The methods to give rpc_server_start: [BATON_SERVICE_METHODS]. */
void baton_inference_service_methods(baton_inference_service *svc, rpc_method *methods);

/* Starts serving: the model, tokenizer and scheduler (not owned) outlive the service or
 * baton_inference_service_stop. Stages are copied. */
void baton_inference_service_ready(baton_inference_service *svc, const baton_model *model,
                                   const baton_tokenizer *tok, baton_scheduler *scheduler,
                                   const baton_stage_info *stages, int n_stages);

/* While not available (a pipeline node is down) Health says NOT_SERVING and Generate gets
 * UNAVAILABLE; the rest still answers. Any thread. */
void baton_inference_service_set_available(baton_inference_service *svc, bool available);

/* Stops taking requests: Health says NOT_SERVING, new calls get UNAVAILABLE. Calls in
 * progress are the scheduler's to end. */
void baton_inference_service_stop(baton_inference_service *svc);

/* Frees; the server must be stopped first. NULL is a no-op. */
void baton_inference_service_free(baton_inference_service *svc);

#endif
