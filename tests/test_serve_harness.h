/* Starting and stopping `baton serve` from a test: the server picks its port (127.0.0.1:0) and
 * prints it; the test reads that line and polls Health until SERVING, each wait bounded. */
#ifndef BATON_TEST_SERVE_HARNESS_H
#define BATON_TEST_SERVE_HARNESS_H

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "baton/v1/inference.pb-c.h"
#include "cli.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rpc_client.h"

enum { SERVE_START_MS = 60000, SERVE_STOP_MS = 30000 };

typedef struct {
    pid_t pid;
    int out_fd;       /* the server's stdout */
    char addr[64];    /* "127.0.0.1:PORT" */
    rpc_channel *channel;
} test_server;

static inline long long test_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Reads the server's stdout until a line starting with prefix; copies the rest of it to rest. */
static inline bool serve_read_line(test_server *s, const char *prefix, char *rest, size_t size,
                                   int timeout_ms) {
    char line[512];
    size_t n = 0;
    long long until = test_now_ms() + timeout_ms;
    while (test_now_ms() < until) {
        struct pollfd p = {.fd = s->out_fd, .events = POLLIN};
        if (poll(&p, 1, (int)(until - test_now_ms())) <= 0) continue;
        char c;
        if (read(s->out_fd, &c, 1) != 1) return false;
        if (c != '\n') {
            if (n + 1 < sizeof line) line[n++] = c;
            continue;
        }
        line[n] = '\0';
        n = 0;
        if (strncmp(line, prefix, strlen(prefix)) == 0) {
            size_t k = strlen(line + strlen(prefix));
            if (k >= size) k = size - 1;
            memcpy(rest, line + strlen(prefix), k);
            rest[k] = '\0';
            return true;
        }
    }
    return false;
}

/* The server's Health status: SERVING, NOT_SERVING, or -1 when the call failed. */
static inline int serve_health(rpc_channel *ch, const char *service) {
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)service;
    ProtobufCMessage *resp = NULL;
    rpc_status st;
    if (!rpc_call_unary(ch, "/grpc.health.v1.Health/Check", &req.base,
                        &grpc__health__v1__health_check_response__descriptor, 1000, &resp, &st))
        return -1;
    int status = ((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
    protobuf_c_message_free_unpacked(resp, NULL);
    return status;
}

/* Runs cmd through the shell with its stdout on a pipe, reads the line "<what>: listening on
 * 127.0.0.1:PORT" it prints (bounded), and sets s->pid, s->out_fd and s->addr. */
/* The server's Info (the caller frees it with protobuf_c_message_free_unpacked). */
static inline Baton__V1__InfoResponse *serve_info(const test_server *s) {
    Baton__V1__InfoRequest req = BATON__V1__INFO_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    rpc_status st;
    REQUIRE(rpc_call_unary(s->channel, "/baton.v1.Inference/Info", &req.base,
                           &baton__v1__info_response__descriptor, 5000, &resp, &st));
    return (Baton__V1__InfoResponse *)resp;
}

static inline void test_spawn(test_server *s, const char *cmd, const char *what) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    s->pid = fork();
    REQUIRE(s->pid >= 0);
    if (s->pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    s->out_fd = fds[0];
    s->channel = NULL;
    char prefix[64], port[32];
    snprintf(prefix, sizeof prefix, "%s: listening on 127.0.0.1:", what);
    if (!serve_read_line(s, prefix, port, sizeof port, SERVE_START_MS)) {
        kill(s->pid, SIGKILL); /* never leave a process behind a failed test */
        waitpid(s->pid, NULL, 0);
        REQUIRE(!"the process printed where it listens");
    }
    snprintf(s->addr, sizeof s->addr, "127.0.0.1:%s", port);
}

/* Starts `baton serve --listen 127.0.0.1:0 <args>` and waits until it is SERVING. */
static inline void serve_start(test_server *s, const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "exec '%s' serve --listen 127.0.0.1:0 %s", cli_bin(), args);
    test_spawn(s, cmd, "baton serve");
    rpc_limits limits = rpc_limits_default();
    REQUIRE(rpc_channel_open(s->addr, &limits, &s->channel, NULL) == BATON_OK);
    long long until = test_now_ms() + SERVE_START_MS;
    int health = -1;
    while (test_now_ms() < until) {
        health = serve_health(s->channel, "");
        if (health == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING) break;
        struct timespec pause = {.tv_nsec = 20 * 1000000}; /* polling, not synchronizing */
        nanosleep(&pause, NULL);
    }
    REQUIRE(health == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
}

/* Closes the channel (if any), sends SIGTERM and waits (bounded) for the exit, killing the process
 * when it does not come; returns the exit code, -1 on a crash or hang. Serves nodes too. */
static inline int serve_stop(test_server *s) {
    rpc_channel_free(s->channel);
    s->channel = NULL;
    kill(s->pid, SIGTERM);
    long long until = test_now_ms() + SERVE_STOP_MS;
    int status = 0;
    pid_t got = 0;
    while (got == 0 && test_now_ms() < until) {
        got = waitpid(s->pid, &status, WNOHANG);
        if (got == 0) {
            struct timespec pause = {.tv_nsec = 20 * 1000000};
            nanosleep(&pause, NULL);
        }
    }
    if (got == 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &status, 0);
        close(s->out_fd);
        return -1;
    }
    close(s->out_fd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs a shell command line and returns its stdout (malloc'ed), or NULL when it failed. */
static inline char *test_capture(const char *cmd, int *exit_code) {
    FILE *p = popen(cmd, "r");
    if (p == NULL) return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf != NULL && (got = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (len + 1 == cap) {
            char *grown = realloc(buf, cap * 2);
            if (grown == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
    }
    int status = pclose(p);
    if (exit_code != NULL) *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (buf != NULL) buf[len] = '\0';
    return buf;
}

#endif
