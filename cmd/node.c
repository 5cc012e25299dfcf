/* baton node: one pipeline stage per local device, served as baton.v1.Stage for a coordinator
 * (`baton serve --nodes`). The node starts empty: the coordinator tells each stage which layers
 * to load. Like serve, it prints its address, and SIGTERM or SIGINT stop it cleanly. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "commands.h"
#include "device_list.h"
#include "device_open.h"
#include "rpc_server.h"
#include "stage_service.h"

static const char node_usage[] =
    "usage: baton node --listen ADDR --model PATH [--devices LIST] [options]\n\n"
    "  --listen ADDR           host:port to serve on; port 0 picks a free one (printed)\n"
    "  --devices LIST          one stage per device: cpu (default), vulkan, vulkan:N or N,\n"
    "                          comma-separated (cpu,cpu: two stages on the CPU)\n"
    "  --max-message-bytes N   largest message (a step's hidden states; default 268435456)\n"
    "  --queue N               calls waiting per stage (default 8)\n";

int cmd_node(int argc, char **argv) {
    static const struct option options[] = {
        {"listen", required_argument, 0, 'l'},  {"model", required_argument, 0, 'm'},
        {"devices", required_argument, 0, 'd'}, {"max-message-bytes", required_argument, 0, 'b'},
        {"queue", required_argument, 0, 'q'},   {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *listen = NULL, *model_path = NULL, *devices = "cpu";
    long long message_bytes = 256 << 20, queue = 8;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'l': listen = optarg; break;
        case 'm': model_path = optarg; break;
        case 'd': devices = optarg; break;
        case 'b':
            ok = args_int("node", "--max-message-bytes", optarg, 1 << 16, 1 << 30, &message_bytes);
            break;
        case 'q': ok = args_int("node", "--queue", optarg, 1, 1024, &queue); break;
        case 'h': fputs(node_usage, stdout); return BATON_EXIT_OK;
        default: return args_usage_error("node", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
        if (!ok) return BATON_EXIT_USAGE;
    }
    if (optind < argc) return args_usage_error("node", "unexpected argument '%s'", argv[optind]);
    if (listen == NULL) return args_usage_error("node", "--listen is required");
    if (model_path == NULL) return args_usage_error("node", "--model is required");
    char specs[DEVICE_LIST_MAX][DEVICE_SPEC_MAX];
    baton_stage_service_config cfg = {.model_path = model_path, .open = device_backend_open,
                                      .limits = rpc_limits_default(), .queue_max = (int)queue};
    if (!device_list_parse(devices, specs, DEVICE_LIST_MAX, &cfg.n_devices))
        return args_usage_error("node", "--devices: '%s' is not a list of cpu, vulkan, vulkan:N",
                                devices);
    cfg.limits.message_bytes_max = (int)message_bytes;
    for (int i = 0; i < cfg.n_devices; i++) {
        cfg.devices[i] = specs[i];
        int sharing = 0;
        for (int k = 0; k < cfg.n_devices; k++) sharing += strcmp(specs[k], specs[i]) == 0;
        cfg.free_bytes[i] = device_free_bytes(specs[i]) / (uint64_t)sharing;
    }

    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    baton_error err = {0};
    baton_stage_service *svc = NULL;
    rpc_server *server = NULL;
    int rc = BATON_EXIT_FAIL;
    if (baton_stage_service_new(&cfg, &svc, &err) != BATON_OK) goto out;
    rpc_method methods[BATON_STAGE_METHODS];
    baton_stage_service_methods(svc, methods);
    int port = 0;
    if (rpc_server_start(listen, &cfg.limits, methods, BATON_STAGE_METHODS, &server, &port, &err) !=
        BATON_OK)
        goto out;
    const char *colon = strrchr(listen, ':');
    int host_len = colon != NULL ? (int)(colon - listen) : (int)strlen(listen);
    printf("baton node: listening on %.*s:%d\n", host_len, listen, port);
    printf("baton node: %d stage%s (%s) for %s\n", cfg.n_devices, cfg.n_devices == 1 ? "" : "s",
           devices, model_path);
    fflush(stdout);
    struct timespec tick = {.tv_sec = 1};
    for (;;) {
        int sig = sigtimedwait(&signals, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT) break;
    }
    printf("baton node: stopping\n");
    fflush(stdout);
    rc = BATON_EXIT_OK;
out:
    if (rc != BATON_EXIT_OK) fprintf(stderr, "baton node: %s\n", err.msg);
    if (svc != NULL) baton_stage_service_stop(svc);
    if (server != NULL && !rpc_server_stop(server, 1000)) {
        fprintf(stderr, "baton node: gRPC did not stop in time; exiting without cleanup\n");
        return BATON_EXIT_FAIL;
    }
    rpc_server_free(server);
    baton_stage_service_free(svc);
    return rc;
}
