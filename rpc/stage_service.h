/* The baton.v1.Stage service of a node (`baton node`): one pipeline stage per local device.
 *
 * The coordinator loads a layer range on each stage (Load) and then drives steps (Step): a stage
 * computes its layers and calls Step on the next stage of the chain with its hidden states; the
 * last stage samples; the token ids travel back as the answers of the chain of calls. Each stage
 * has a worker thread that owns its backend and takes Load and Step calls in order from a
 * bounded queue, so the server thread never blocks. Every request is checked here: nothing from
 * the wire reaches an assert, and a bad request never stops the node. */
#ifndef BATON_STAGE_SERVICE_H
#define BATON_STAGE_SERVICE_H

#include "backend.h"
#include "rpc_server.h"

/* Opens a backend on device spec; the node passes cmd/device_open's. */
typedef baton_status (*baton_backend_opener)(const char *spec, const baton_model *model,
                                             const baton_stage_config *config,
                                             baton_backend **out, baton_error *err);

enum { BATON_STAGE_DEVICES_MAX = 16, BATON_STAGE_METHODS = 3 };

typedef struct {
    const char *model_path;
    int n_devices;
    const char *devices[BATON_STAGE_DEVICES_MAX]; /* specs, one stage each */
    uint64_t free_bytes[BATON_STAGE_DEVICES_MAX]; /* what each stage may use */
    baton_backend_opener open;
    rpc_limits limits;     /* of the channels to next stages */
    int queue_max;         /* calls waiting per stage; more get RESOURCE_EXHAUSTED */
} baton_stage_service_config;

typedef struct baton_stage_service baton_stage_service;

/* Maps the model file (header and dims only; layers are loaded by Load) and starts the stage
 * workers. The config is copied (the strings must outlive the service). */
baton_status baton_stage_service_new(const baton_stage_service_config *config,
                                     baton_stage_service **out, baton_error *err);

/* The methods to give rpc_server_start: [BATON_STAGE_METHODS]. */
void baton_stage_service_methods(baton_stage_service *svc, rpc_method *methods);

/* Stops the workers; calls queued or arriving get UNAVAILABLE. */
void baton_stage_service_stop(baton_stage_service *svc);

/* Frees; the server must be stopped first. NULL is a no-op. */
void baton_stage_service_free(baton_stage_service *svc);

#endif
