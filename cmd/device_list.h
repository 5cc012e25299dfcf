/* Lists of devices on the command line ("cpu", "cpu,cpu", "vulkan:0,vulkan:1", "0,1") and what
 * each can hold, for the pipeline plan. */
#ifndef BATON_DEVICE_LIST_H
#define BATON_DEVICE_LIST_H

#include <stdbool.h>
#include <stdint.h>

enum { DEVICE_LIST_MAX = 16, DEVICE_SPEC_MAX = 32 };

/* Splits text at commas into specs; a bare number N means vulkan:N. False on a bad spelling. */
bool device_list_parse(const char *text, char specs[][DEVICE_SPEC_MAX], int max, int *n);

/* Bytes a stage on spec may use: available RAM for cpu, the device-local heaps for Vulkan
 * (their size: Vulkan reports no free memory without an extension); 0 when unknown. */
uint64_t device_free_bytes(const char *spec);

#endif
