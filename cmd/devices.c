/* baton devices: the Vulkan compute devices, with what the engine probes on each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"

#ifdef BATON_HAVE_VULKAN
#include "vk_backend.h"

static void print_device(const baton_vk_device_info *d) {
    printf("vulkan:%d  %s  [%s, Vulkan %u.%u.%u, vendor 0x%04x device 0x%04x]%s\n", d->index, d->name,
           d->type, d->api_version >> 22, (d->api_version >> 12) & 0x3ffu, d->api_version & 0xfffu,
           d->vendor_id, d->device_id, d->usable ? "" : "  (not usable: needs Vulkan 1.2 + compute)");
    if (d->driver[0]) printf("    driver: %s\n", d->driver);
    /* (what names the device and driver build in its tuning's cache key) */
    printf("    uuid: ");
    for (int i = 0; i < 16; i++) printf("%02x", d->device_uuid[i]);
    printf(", driver version 0x%08x\n", d->driver_version);
    printf("    memory: %.1f GiB device-local, %.1f GiB other; max allocation %.0f MiB, max storage "
           "binding %.0f MiB\n", (double)d->device_local_bytes / (1 << 30),
           (double)d->host_bytes / (1 << 30), (double)d->max_alloc / (1 << 20),
           (double)d->max_storage_range / (1 << 20));
    printf("    compute: subgroup %u%s, shared memory %u KiB, workgroup %u invocations, timestamps %s\n",
           d->subgroup_size, d->subgroup_arith ? " (arithmetic)" : "", d->max_shared_bytes / 1024,
           d->max_workgroup_invocations, d->timestamps ? "yes" : "no");
    printf("    features: 16-bit storage %s, float16 %s, int8 %s, cooperative matrix NV %s, KHR %s\n",
           d->storage16 ? "yes" : "no", d->float16 ? "yes" : "no", d->int8 ? "yes" : "no",
           d->coopmat_nv ? "yes" : "no", d->coopmat_khr ? "yes" : "no");
    if (d->coopmat_shapes[0]) printf("    cooperative matrix shapes (NV): %s\n", d->coopmat_shapes);
}
#endif

int cmd_devices(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: baton devices\n\nLists the Vulkan compute devices: vulkan:N is what "
                   "--device takes; \"vulkan\" picks the best usable one (marked *).\n");
            return BATON_EXIT_OK;
        }
        return args_usage_error("devices", "unexpected argument '%s'", argv[i]);
    }
#ifdef BATON_HAVE_VULKAN
    baton_vk_device_info *infos = NULL;
    int n = 0;
    baton_error err = {0};
    if (baton_vk_devices_list(&infos, &n, &err) != BATON_OK) {
        fprintf(stderr, "baton devices: %s\n", err.msg);
        return BATON_EXIT_FAIL;
    }
    if (n == 0) {
        fprintf(stderr, "baton devices: no Vulkan device (is a driver installed?)\n");
        free(infos);
        return BATON_EXIT_FAIL;
    }
    int best = -1;
    for (int i = 0; i < n; i++) {
        if (!infos[i].usable) continue;
        if (best < 0 || infos[i].score > infos[best].score ||
            (infos[i].score == infos[best].score && infos[i].device_local_bytes > infos[best].device_local_bytes))
            best = i;
    }
    for (int i = 0; i < n; i++) {
        if (i == best) printf("* ");
        print_device(&infos[i]);
    }
    free(infos);
    return best >= 0 ? BATON_EXIT_OK : BATON_EXIT_FAIL;
#else
    fprintf(stderr, "baton devices: this build has no Vulkan engine (libvulkan-dev and "
                    "glslangValidator were missing at configure time)\n");
    return BATON_EXIT_FAIL;
#endif
}
