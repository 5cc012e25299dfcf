/* A whole file mapped read-only into memory.
 *
 * Model files are read through one private read-only mapping so that weights cost page cache and
 * nothing more; the pages are read by the kernel when first touched. */
#ifndef BATON_MAPPED_FILE_H
#define BATON_MAPPED_FILE_H

#include <stdint.h>

#include "status.h"

typedef struct {
    const unsigned char *data; /* size bytes, read-only; NULL when closed */
    uint64_t size;
} baton_mapped_file;

/* Maps path whole. An empty file, a folder or an unreadable path is an error naming path. */
baton_status baton_mapped_file_open(const char *path, baton_mapped_file *out, baton_error *err);

/* Unmaps; a zeroed or already closed struct is a no-op. */
void baton_mapped_file_close(baton_mapped_file *file);

/* Asks the kernel to read [offset, offset + size) ahead; a hint only, failures are ignored. */
void baton_mapped_file_will_need(const baton_mapped_file *file, uint64_t offset, uint64_t size);

#endif
