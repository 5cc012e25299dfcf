/* Progress of long work (loading, converting, uploading) on a terminal: one line on stderr,
 * redrawn at most a few times a second, and nothing at all when stderr is not a terminal. */
#ifndef BATON_PROGRESS_H
#define BATON_PROGRESS_H

#include <stdint.h>

typedef struct {
    const char *label;
    uint64_t total, done;
    double started_s, drawn_s;
    int enabled;
} baton_progress;

void baton_progress_begin(baton_progress *p, const char *label, uint64_t total_bytes);
void baton_progress_add(baton_progress *p, uint64_t bytes);
void baton_progress_end(baton_progress *p);

#endif
