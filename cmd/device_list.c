#include "device_list.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device_open.h"
#include "plan.h"

#ifdef BATON_HAVE_VULKAN
#include "vk_backend.h"
#endif

bool device_list_parse(const char *text, char specs[][DEVICE_SPEC_MAX], int max, int *n) {
    *n = 0;
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= DEVICE_SPEC_MAX - 8 || *n == max) return false;
        char *spec = specs[(*n)++];
        bool number = strspn(p, "0123456789") == len;
        snprintf(spec, DEVICE_SPEC_MAX, "%s%.*s", number ? "vulkan:" : "", (int)len, p);
        if (!device_spec_valid(spec)) return false;
        if (comma == NULL) return true;
        p = comma + 1;
    }
}

uint64_t device_free_bytes(const char *spec) {
    if (strncmp(spec, "cpu", 3) == 0) return baton_plan_ram_available(); /* and cpu-delay:MS */
#ifdef BATON_HAVE_VULKAN
    baton_vk_device_info *devices = NULL;
    int count = 0;
    if (baton_vk_devices_list(&devices, &count, NULL) != BATON_OK) return 0;
    int want = strcmp(spec, "vulkan") == 0 ? -1 : atoi(spec + 7), best = -1;
    for (int i = 0; i < count; i++) {
        if (want >= 0 ? devices[i].index == want
                      : devices[i].usable && (best < 0 || devices[i].score > devices[best].score))
            best = i;
    }
    uint64_t bytes = 0;
    if (best >= 0)
        bytes = devices[best].device_local_bytes ? devices[best].device_local_bytes
                                                 : devices[best].host_bytes;
    free(devices);
    return bytes;
#else
    return 0;
#endif
}
