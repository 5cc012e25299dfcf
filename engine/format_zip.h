/* Reading the central directory of a zip archive held in memory, as torch.save writes them.
 *
 * Only what a checkpoint needs: one disk, stored (uncompressed) entries, ZIP64 sizes and offsets.
 * Every entry's local header and data have been checked to lie inside the buffer, before the
 * central directory, and not to overlap any other entry. CRCs are not checked: that would read
 * the whole 28 GB file at every load. */
#ifndef BATON_FORMAT_ZIP_H
#define BATON_FORMAT_ZIP_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

enum { BATON_ZIP_ENTRY_MAX = 1 << 17 }; /* tensors plus a few bookkeeping entries */

typedef struct {
    const char *name;     /* NUL-terminated, owned by the archive */
    uint64_t data_offset; /* first byte of the entry's data in the buffer */
    uint64_t size;        /* bytes of data */
} baton_zip_entry;

typedef struct baton_zip baton_zip;

/* Reads the directory of the archive in data[0, size). Messages do not name the buffer (the
 * caller prefixes them). The archive copies the names and keeps offsets into data, no pointers. */
baton_status baton_zip_open(const unsigned char *data, uint64_t size, baton_zip **out,
                            baton_error *err);

/* Frees; NULL is a no-op. */
void baton_zip_free(baton_zip *zip);

size_t baton_zip_count(const baton_zip *zip);
/* Entry i of baton_zip_count, in name order. */
const baton_zip_entry *baton_zip_entry_at(const baton_zip *zip, size_t i);
/* The entry called name, or NULL. */
const baton_zip_entry *baton_zip_find(const baton_zip *zip, const char *name);

#endif
