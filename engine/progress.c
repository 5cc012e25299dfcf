#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void draw(const baton_progress *p, double t) {
    double mib = (double)p->done / (1 << 20), total_mib = (double)p->total / (1 << 20);
    double pct = p->total ? 100.0 * (double)p->done / (double)p->total : 100.0;
    double rate = t > p->started_s ? mib / (t - p->started_s) : 0.0;
    fprintf(stderr, "\r%s: %.0f / %.0f MiB (%.0f%%, %.0f MiB/s)   ", p->label, mib, total_mib, pct,
            rate);
    fflush(stderr);
}

void baton_progress_begin(baton_progress *p, const char *label, uint64_t total_bytes) {
    p->label = label;
    p->total = total_bytes;
    p->done = 0;
    p->started_s = now_s();
    p->drawn_s = 0.0;
    p->enabled = isatty(STDERR_FILENO);
}

void baton_progress_add(baton_progress *p, uint64_t bytes) {
    p->done += bytes;
    if (!p->enabled) return;
    double t = now_s();
    if (t - p->drawn_s < 0.2) return;
    p->drawn_s = t;
    draw(p, t);
}

void baton_progress_end(baton_progress *p) {
    if (!p->enabled) return;
    draw(p, now_s());
    fputc('\n', stderr);
}
