/* What every Vulkan test shares: the device under test ($BATON_TEST_VK_DEVICE, default -1 = the
 * best), skipping when there is none, the smaller cases of the validation run
 * ($BATON_TEST_SMALL=1), and the validation-message check. */
#ifndef BATON_TEST_VK_COMMON_H
#define BATON_TEST_VK_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "vk_backend.h"

static inline int vk_test_device(void) {
    const char *env = getenv("BATON_TEST_VK_DEVICE");
    return env != NULL && env[0] != '\0' ? atoi(env) : -1;
}

static inline bool vk_test_small(void) {
    const char *env = getenv("BATON_TEST_SMALL");
    return env != NULL && strcmp(env, "1") == 0;
}

/* Skips (exit 77) unless the device under test exists and is usable. */
static inline void vk_test_require_device(void) {
    baton_vk_device_info *infos = NULL;
    int n = 0;
    baton_error err = {0};
    if (baton_vk_devices_list(&infos, &n, &err) != BATON_OK) {
        fprintf(stderr, "%s\n", err.msg);
        test_skip("no Vulkan loader, driver or validation layer (see the line above)");
    }
    int dev = vk_test_device();
    bool ok = false;
    for (int i = 0; i < n; i++) ok |= infos[i].usable && (dev < 0 || dev == i);
    if (ok) printf("device: %s\n", dev >= 0 && dev < n ? infos[dev].name : "(the best)");
    free(infos);
    if (!ok) test_skip("no usable Vulkan device (BATON_TEST_VK_DEVICE names the one to test)");
}

/* Every test ends with this: under BATON_VK_VALIDATION=1 no message may have been reported. */
static inline int vk_test_result(void) {
    uint32_t n = baton_vk_validation_messages();
    CHECK_MSG(n == 0, "%u validation message(s)", n);
    return test_result();
}

/* A small deterministic generator for test data. */
static inline float vk_test_rand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)(*s >> 40) * 0x1.0p-24f * 2.0f - 1.0f; /* [-1, 1) */
}

#endif
