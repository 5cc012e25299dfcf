#include "format_zip.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

enum {
    EOCD_SIG = 0x06054b50,
    EOCD_SIZE = 22,
    EOCD_COMMENT_MAX = 65535,
    LOCATOR_SIG = 0x07064b50,
    LOCATOR_SIZE = 20,
    EOCD64_SIG = 0x06064b50,
    EOCD64_SIZE = 56,
    CENTRAL_SIG = 0x02014b50,
    CENTRAL_SIZE = 46,
    LOCAL_SIG = 0x04034b50,
    LOCAL_SIZE = 30,
    ZIP64_EXTRA_ID = 0x0001,
    NAME_BYTES_MAX = 4096, /* a checkpoint's names are short; this bounds the name blob */
};

typedef struct {
    baton_zip_entry pub;
    uint64_t header_offset; /* the local header: where the entry's bytes begin */
} zip_entry;

struct baton_zip {
    size_t count;
    zip_entry *entries; /* [count], sorted by name */
    char *names;        /* every name, NUL-terminated, back to back */
};

static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t le64(const unsigned char *p) { return le32(p) | ((uint64_t)le32(p + 4) << 32); }

/* True when [offset, offset + len) lies inside [0, limit), without overflow. */
static int fits(uint64_t offset, uint64_t len, uint64_t limit) {
    return offset <= limit && len <= limit - offset;
}

typedef struct {
    uint64_t count, cd_offset, cd_size;
    uint64_t cd_limit; /* the central directory must end here (where the end records begin) */
} zip_directory;

static baton_status zip_find_eocd(const unsigned char *data, uint64_t size, uint64_t *eocd,
                                  baton_error *err) {
    if (size < EOCD_SIZE) {
        return baton_fail(err, BATON_ERR_FORMAT, "zip: %llu bytes is too short for an archive",
                          (unsigned long long)size);
    }
    uint64_t last = size - EOCD_SIZE;
    uint64_t first = last > EOCD_COMMENT_MAX ? last - EOCD_COMMENT_MAX : 0;
    /* Scan back over a possible trailing comment; the record must account for every byte after it. */
    for (uint64_t pos = last + 1; pos-- > first;) {
        if (le32(data + pos) == EOCD_SIG && pos + EOCD_SIZE + le16(data + pos + 20) == size) {
            *eocd = pos;
            return BATON_OK;
        }
    }
    return baton_fail(err, BATON_ERR_FORMAT,
                      "zip: no end of central directory record (not a zip archive, or truncated)");
}

static baton_status zip_read_directory(const unsigned char *data, uint64_t size, zip_directory *dir,
                                       baton_error *err) {
    uint64_t eocd = 0;
    baton_status st = zip_find_eocd(data, size, &eocd, err);
    if (st != BATON_OK) return st;
    const unsigned char *e = data + eocd;
    if (le16(e + 4) != 0 || le16(e + 6) != 0) {
        return baton_fail(err, BATON_ERR_UNSUPPORTED, "zip: multi-disk archives are not supported");
    }
    dir->count = le16(e + 10);
    dir->cd_size = le32(e + 12);
    dir->cd_offset = le32(e + 16);
    dir->cd_limit = eocd;
    int needs64 = le16(e + 8) == 0xffff || dir->count == 0xffff || dir->cd_size == 0xffffffffu ||
                  dir->cd_offset == 0xffffffffu;
    if (eocd >= LOCATOR_SIZE && le32(data + eocd - LOCATOR_SIZE) == LOCATOR_SIG) {
        const unsigned char *loc = data + eocd - LOCATOR_SIZE;
        uint64_t rec = le64(loc + 8);
        if (le32(loc + 4) != 0 || le32(loc + 16) > 1) {
            return baton_fail(err, BATON_ERR_UNSUPPORTED, "zip: multi-disk archives are not supported");
        }
        if (!fits(rec, EOCD64_SIZE, eocd - LOCATOR_SIZE)) {
            return baton_fail(err, BATON_ERR_FORMAT,
                              "zip: ZIP64 end record offset %llu lies outside the archive",
                              (unsigned long long)rec);
        }
        const unsigned char *r = data + rec;
        if (le32(r) != EOCD64_SIG || le64(r + 4) < EOCD64_SIZE - 12) {
            return baton_fail(err, BATON_ERR_FORMAT, "zip: bad ZIP64 end record at %llu",
                              (unsigned long long)rec);
        }
        if (le32(r + 16) != 0 || le32(r + 20) != 0 || le64(r + 24) != le64(r + 32)) {
            return baton_fail(err, BATON_ERR_UNSUPPORTED, "zip: multi-disk archives are not supported");
        }
        dir->count = le64(r + 32);
        dir->cd_size = le64(r + 40);
        dir->cd_offset = le64(r + 48);
        dir->cd_limit = rec;
    } else if (needs64) {
        return baton_fail(err, BATON_ERR_FORMAT, "zip: ZIP64 end record locator missing");
    } else if (le16(e + 8) != dir->count) {
        return baton_fail(err, BATON_ERR_UNSUPPORTED, "zip: multi-disk archives are not supported");
    }
    if (!fits(dir->cd_offset, dir->cd_size, dir->cd_limit)) {
        return baton_fail(err, BATON_ERR_FORMAT,
                          "zip: central directory (offset %llu, %llu bytes) runs past its end "
                          "record at %llu",
                          (unsigned long long)dir->cd_offset, (unsigned long long)dir->cd_size,
                          (unsigned long long)dir->cd_limit);
    }
    if (dir->count > BATON_ZIP_ENTRY_MAX) {
        return baton_fail(err, BATON_ERR_UNSUPPORTED, "zip: %llu entries, more than the %d read",
                          (unsigned long long)dir->count, BATON_ZIP_ENTRY_MAX);
    }
    if (dir->count > dir->cd_size / CENTRAL_SIZE) {
        return baton_fail(err, BATON_ERR_FORMAT,
                          "zip: %llu entries cannot fit a central directory of %llu bytes",
                          (unsigned long long)dir->count, (unsigned long long)dir->cd_size);
    }
    return BATON_OK;
}

/* One central directory header, parsed and checked but not yet tied to its local header. */
typedef struct {
    const unsigned char *name;
    uint16_t name_len;
    uint64_t size, header_offset;
    uint64_t next; /* where the next central header begins */
} central_header;

/* Reads the ZIP64 extra field's values for the header fields that hold all ones. */
static baton_status zip_read_zip64_extra(const unsigned char *extra, uint16_t extra_len,
                                         uint64_t *uncomp, uint64_t *comp, uint64_t *offset,
                                         uint32_t *disk, baton_error *err) {
    for (uint32_t at = 0; at + 4 <= extra_len;) {
        uint16_t id = le16(extra + at), len = le16(extra + at + 2);
        if (len > extra_len - at - 4) {
            return baton_fail(err, BATON_ERR_FORMAT, "extra field %#x runs past its header", id);
        }
        if (id == ZIP64_EXTRA_ID) {
            const unsigned char *p = extra + at + 4;
            uint32_t left = len;
            uint64_t *wanted[3] = {uncomp, comp, offset};
            for (int i = 0; i < 3; i++) {
                if (*wanted[i] != 0xffffffffu) continue;
                if (left < 8) return baton_fail(err, BATON_ERR_FORMAT, "ZIP64 extra field too short");
                *wanted[i] = le64(p);
                p += 8;
                left -= 8;
            }
            if (*disk == 0xffff) {
                if (left < 4) return baton_fail(err, BATON_ERR_FORMAT, "ZIP64 extra field too short");
                *disk = le32(p);
            }
            return BATON_OK;
        }
        at += 4u + len;
    }
    return BATON_OK;
}

static baton_status zip_read_central(const unsigned char *data, uint64_t at, uint64_t end,
                                     central_header *h, baton_error *err) {
    if (!fits(at, CENTRAL_SIZE, end) || le32(data + at) != CENTRAL_SIG) {
        return baton_fail(err, BATON_ERR_FORMAT, "zip: bad central directory header at %llu",
                          (unsigned long long)at);
    }
    const unsigned char *c = data + at;
    uint16_t flags = le16(c + 8), method = le16(c + 10);
    uint64_t comp = le32(c + 20), uncomp = le32(c + 24);
    uint16_t name_len = le16(c + 28), extra_len = le16(c + 30), comment_len = le16(c + 32);
    uint32_t disk = le16(c + 34);
    uint64_t offset = le32(c + 42);
    uint64_t var_len = (uint64_t)name_len + extra_len + comment_len;
    if (!fits(at + CENTRAL_SIZE, var_len, end)) {
        return baton_fail(err, BATON_ERR_FORMAT,
                          "zip: central directory header at %llu runs past the directory",
                          (unsigned long long)at);
    }
    h->name = c + CENTRAL_SIZE;
    h->name_len = name_len;
    h->next = at + CENTRAL_SIZE + var_len;
    if (name_len == 0 || name_len > NAME_BYTES_MAX || memchr(h->name, 0, name_len) != NULL) {
        return baton_fail(err, BATON_ERR_FORMAT, "zip: entry at %llu has a bad name",
                          (unsigned long long)at);
    }
    const int n = name_len;
    if (flags & 1u) {
        return baton_fail(err, BATON_ERR_UNSUPPORTED, "zip: entry '%.*s' is encrypted", n, h->name);
    }
    if (method != 0) {
        return baton_fail(err, BATON_ERR_UNSUPPORTED,
                          "zip: entry '%.*s' is compressed (method %u); only stored entries, as "
                          "torch.save writes them, are read",
                          n, h->name, method);
    }
    baton_status st =
        zip_read_zip64_extra(h->name + name_len, extra_len, &uncomp, &comp, &offset, &disk, err);
    if (st != BATON_OK) {
        baton_error_prefix(err, "zip: entry '%.*s'", n, h->name);
        return st;
    }
    if (comp == 0xffffffffu || uncomp == 0xffffffffu || offset == 0xffffffffu) {
        return baton_fail(err, BATON_ERR_FORMAT, "zip: entry '%.*s' lacks its ZIP64 sizes", n,
                          h->name);
    }
    if (disk != 0) {
        return baton_fail(err, BATON_ERR_UNSUPPORTED, "zip: entry '%.*s' is on another disk", n,
                          h->name);
    }
    if (comp != uncomp) {
        return baton_fail(err, BATON_ERR_FORMAT,
                          "zip: stored entry '%.*s' has %llu compressed bytes but %llu uncompressed",
                          n, h->name, (unsigned long long)comp, (unsigned long long)uncomp);
    }
    h->size = uncomp;
    h->header_offset = offset;
    return BATON_OK;
}

/* Finds where the entry's data begins from its local header, whose name and extra lengths
 * may differ from the central ones (torch pads the local extra field to align the data). */
static baton_status zip_read_local(const unsigned char *data, uint64_t cd_offset,
                                   const central_header *h, uint64_t *data_offset,
                                   baton_error *err) {
    const int n = h->name_len;
    if (!fits(h->header_offset, LOCAL_SIZE, cd_offset) ||
        le32(data + h->header_offset) != LOCAL_SIG) {
        return baton_fail(err, BATON_ERR_FORMAT, "zip: entry '%.*s': no local header at %llu", n,
                          h->name, (unsigned long long)h->header_offset);
    }
    const unsigned char *l = data + h->header_offset;
    uint16_t name_len = le16(l + 26), extra_len = le16(l + 28);
    uint64_t start = h->header_offset + LOCAL_SIZE;
    if (le16(l + 8) != 0 || name_len != h->name_len || !fits(start, name_len, cd_offset) ||
        memcmp(data + start, h->name, name_len) != 0) {
        return baton_fail(err, BATON_ERR_FORMAT,
                          "zip: entry '%.*s': local header disagrees with the central directory", n,
                          h->name);
    }
    start += (uint64_t)name_len + extra_len;
    if (!fits(start, h->size, cd_offset)) {
        return baton_fail(err, BATON_ERR_FORMAT,
                          "zip: entry '%.*s': data (offset %llu, %llu bytes) runs past the central "
                          "directory at %llu",
                          n, h->name, (unsigned long long)start, (unsigned long long)h->size,
                          (unsigned long long)cd_offset);
    }
    *data_offset = start;
    return BATON_OK;
}

static int zip_entry_by_offset(const void *a, const void *b) {
    const zip_entry *x = a, *y = b;
    return (x->header_offset > y->header_offset) - (x->header_offset < y->header_offset);
}

static int zip_entry_by_name(const void *a, const void *b) {
    const zip_entry *x = a, *y = b;
    return strcmp(x->pub.name, y->pub.name);
}

/* Entries must not share bytes: overlapping entries are how zip bombs and confused parsers start. */
static baton_status zip_check_layout(baton_zip *zip, baton_error *err) {
    qsort(zip->entries, zip->count, sizeof *zip->entries, zip_entry_by_offset);
    for (size_t i = 1; i < zip->count; i++) {
        const zip_entry *prev = &zip->entries[i - 1], *cur = &zip->entries[i];
        if (cur->header_offset < prev->pub.data_offset + prev->pub.size) {
            return baton_fail(err, BATON_ERR_FORMAT, "zip: entries '%s' and '%s' overlap",
                              prev->pub.name, cur->pub.name);
        }
    }
    qsort(zip->entries, zip->count, sizeof *zip->entries, zip_entry_by_name);
    for (size_t i = 1; i < zip->count; i++) {
        if (strcmp(zip->entries[i - 1].pub.name, zip->entries[i].pub.name) == 0) {
            return baton_fail(err, BATON_ERR_FORMAT, "zip: entry '%s' appears twice",
                              zip->entries[i].pub.name);
        }
    }
    return BATON_OK;
}

baton_status baton_zip_open(const unsigned char *data, uint64_t size, baton_zip **out,
                            baton_error *err) {
    *out = NULL;
    zip_directory dir = {0};
    baton_status st = zip_read_directory(data, size, &dir, err);
    if (st != BATON_OK) return st;

    /* First pass: check every central header and size the name blob from bytes really there. */
    uint64_t cd_end = dir.cd_offset + dir.cd_size, at = dir.cd_offset, name_bytes = 0;
    for (uint64_t i = 0; i < dir.count; i++) {
        central_header h = {0};
        st = zip_read_central(data, at, cd_end, &h, err);
        if (st != BATON_OK) return st;
        name_bytes += h.name_len + 1u;
        at = h.next;
    }

    baton_zip *zip = calloc(1, sizeof *zip);
    if (zip == NULL) return baton_fail(err, BATON_ERR_NOMEM, "zip: out of memory");
    zip->entries = calloc(dir.count ? dir.count : 1, sizeof *zip->entries);
    zip->names = malloc(name_bytes ? name_bytes : 1);
    if (zip->entries == NULL || zip->names == NULL) {
        baton_zip_free(zip);
        return baton_fail(err, BATON_ERR_NOMEM, "zip: out of memory for %llu entries",
                          (unsigned long long)dir.count);
    }
    char *name = zip->names;
    at = dir.cd_offset;
    for (uint64_t i = 0; i < dir.count; i++) {
        central_header h = {0};
        st = zip_read_central(data, at, cd_end, &h, err);
        assert(st == BATON_OK); /* the first pass read the same bytes */
        zip_entry *e = &zip->entries[zip->count];
        st = zip_read_local(data, dir.cd_offset, &h, &e->pub.data_offset, err);
        if (st != BATON_OK) {
            baton_zip_free(zip);
            return st;
        }
        memcpy(name, h.name, h.name_len);
        name[h.name_len] = '\0';
        e->pub.name = name;
        e->pub.size = h.size;
        e->header_offset = h.header_offset;
        name += h.name_len + 1u;
        zip->count++;
        at = h.next;
    }
    st = zip_check_layout(zip, err);
    if (st != BATON_OK) {
        baton_zip_free(zip);
        return st;
    }
    *out = zip;
    return BATON_OK;
}

void baton_zip_free(baton_zip *zip) {
    if (zip == NULL) return;
    free(zip->entries);
    free(zip->names);
    free(zip);
}

size_t baton_zip_count(const baton_zip *zip) { return zip->count; }

const baton_zip_entry *baton_zip_entry_at(const baton_zip *zip, size_t i) {
    assert(i < zip->count);
    return &zip->entries[i].pub;
}

const baton_zip_entry *baton_zip_find(const baton_zip *zip, const char *name) {
    size_t lo = 0, hi = zip->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(zip->entries[mid].pub.name, name);
        if (c == 0) return &zip->entries[mid].pub;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}
