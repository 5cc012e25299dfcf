/* Figures the Linux kernel reports in kB under /proc. */
#ifndef BATON_PROCFS_H
#define BATON_PROCFS_H

#include <stdint.h>

/* The "<field>: N kB" line of a /proc file (e.g. "/proc/meminfo", "MemAvailable"), in bytes; 0
 * when the file or the line is missing. */
uint64_t baton_proc_kb(const char *path, const char *field);

#endif
