#include "mapped_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

baton_status baton_mapped_file_open(const char *path, baton_mapped_file *out, baton_error *err) {
    out->data = NULL;
    out->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return baton_fail(err, BATON_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return baton_fail(err, BATON_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return baton_fail(err, BATON_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size <= 0) {
        close(fd);
        return baton_fail(err, BATON_ERR_FORMAT, "%s: empty file", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return baton_fail(err, BATON_ERR_NOMEM, "%s: too large to map", path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file open */
    if (p == MAP_FAILED) return baton_fail(err, BATON_ERR_IO, "%s: cannot map: %s", path, strerror(e));
    out->data = p;
    out->size = (uint64_t)st.st_size;
    return BATON_OK;
}

void baton_mapped_file_close(baton_mapped_file *file) {
    if (file->data != NULL) munmap((void *)file->data, (size_t)file->size);
    file->data = NULL;
    file->size = 0;
}

void baton_mapped_file_will_need(const baton_mapped_file *file, uint64_t offset, uint64_t size) {
    if (file->data == NULL || offset >= file->size) return;
    if (size > file->size - offset) size = file->size - offset;
    long page = sysconf(_SC_PAGESIZE);
    uint64_t page_size = page > 0 ? (uint64_t)page : 4096;
    uint64_t begin = offset - offset % page_size;
    (void)madvise((void *)(file->data + begin), (size_t)(offset + size - begin), MADV_WILLNEED);
}
