/* Vulkan set-up as one straight line (instance, device, queue, pool, command buffer, fence,
 * layouts, pipelines, descriptor pool) and teardown in exact reverse. */
#include "vk_context.h"
#include "vk_kernels.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static atomic_uint validation_messages;

uint32_t baton_vk_validation_messages(void) { return atomic_load(&validation_messages); }

static const char *vk_result_name(VkResult r) {
    switch (r) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_NOT_READY: return "VK_NOT_READY";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_INCOMPLETE: return "VK_INCOMPLETE";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
    default: return "VkResult";
    }
}

baton_status vk_fail(baton_error *err, VkResult r, const char *what) {
    baton_status s = BATON_ERR_DEVICE;
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY ||
        r == VK_ERROR_TOO_MANY_OBJECTS || r == VK_ERROR_OUT_OF_POOL_MEMORY)
        s = BATON_ERR_NOMEM;
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER || r == VK_ERROR_INITIALIZATION_FAILED)
        s = BATON_ERR_UNAVAILABLE;
    return baton_fail(err, s, "%s: %s (%d)", what, vk_result_name(r), (int)r);
}

static VKAPI_ATTR VkBool32 VKAPI_CALL debug_callback(
    VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT types,
    const VkDebugUtilsMessengerCallbackDataEXT *data, void *user) {
    (void)types;
    (void)user;
    if (severity & (VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                    VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT)) {
        atomic_fetch_add(&validation_messages, 1);
        fprintf(stderr, "vulkan validation: %s\n", data->pMessage ? data->pMessage : "(no text)");
    }
    return VK_FALSE;
}

static bool env_flag(const char *name) {
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

static bool has_layer(const char *name) {
    uint32_t n = 0;
    if (vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0) return false;
    VkLayerProperties *props = calloc(n, sizeof *props);
    if (props == NULL) return false;
    bool found = false;
    if (vkEnumerateInstanceLayerProperties(&n, props) == VK_SUCCESS) {
        for (uint32_t i = 0; i < n; i++) found |= strcmp(props[i].layerName, name) == 0;
    }
    free(props);
    return found;
}

static bool has_instance_ext(const char *name) {
    uint32_t n = 0;
    if (vkEnumerateInstanceExtensionProperties(NULL, &n, NULL) != VK_SUCCESS || n == 0) return false;
    VkExtensionProperties *props = calloc(n, sizeof *props);
    if (props == NULL) return false;
    bool found = false;
    if (vkEnumerateInstanceExtensionProperties(NULL, &n, props) == VK_SUCCESS) {
        for (uint32_t i = 0; i < n; i++) found |= strcmp(props[i].extensionName, name) == 0;
    }
    free(props);
    return found;
}

/* BATON_VK_VALIDATION's mode: 0 unset (no layer), 1 the API's rules, 2 (sync) its
 * synchronization checks too. */
static int validation_mode(void) {
    if (!env_flag("BATON_VK_VALIDATION")) return 0;
    return strcmp(getenv("BATON_VK_VALIDATION"), "sync") == 0 ? 2 : 1;
}

/* The instance, with validation and its messenger in validation mode 1 or 2. */
static baton_status instance_create(int mode, VkInstance *out, VkDebugUtilsMessengerEXT *messenger,
                                    baton_error *err) {
    *out = VK_NULL_HANDLE;
    *messenger = VK_NULL_HANDLE;
    uint32_t loader_version = 0;
    if (vkEnumerateInstanceVersion(&loader_version) != VK_SUCCESS ||
        loader_version < VK_API_VERSION_1_2)
        return baton_fail(err, BATON_ERR_UNAVAILABLE, "the Vulkan loader is older than 1.2");
    bool validation = mode > 0, sync = mode == 2;
    if (validation && !has_layer("VK_LAYER_KHRONOS_validation"))
        return baton_fail(err, BATON_ERR_UNAVAILABLE,
                          "BATON_VK_VALIDATION=1 but VK_LAYER_KHRONOS_validation is not installed");
    const char *exts[3];
    uint32_t n_exts = 0;
    VkInstanceCreateFlags flags = 0;
    if (has_instance_ext(VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME)) {
        exts[n_exts++] = VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME;
        flags |= VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR;
    }
    if (validation) exts[n_exts++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
    if (sync) exts[n_exts++] = VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME; /* the layer's own */
    const char *layers[] = {"VK_LAYER_KHRONOS_validation"};
    /* sync: beyond the API's rules, the layer checks synchronization: a read or write of a
     * buffer that no barrier orders after another dispatch's or copy's write (a hazard one
     * driver may forgive and another not). Not by default: Debian 12's layer leaks memory at
     * exit when it does, which LeakSanitizer takes for ours. */
    VkValidationFeatureEnableEXT checks[] = {
        VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT,
    };
    VkValidationFeaturesEXT features = {
        .sType = VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT,
        .enabledValidationFeatureCount = 1,
        .pEnabledValidationFeatures = checks,
    };
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "baton",
        .pEngineName = "baton",
        .apiVersion = VK_API_VERSION_1_2,
    };
    VkDebugUtilsMessengerCreateInfoEXT dbg = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = debug_callback,
    };
    if (sync) dbg.pNext = &features;
    VkInstanceCreateInfo info = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pNext = validation ? &dbg : NULL,
        .flags = flags,
        .pApplicationInfo = &app,
        .enabledLayerCount = validation ? 1u : 0u,
        .ppEnabledLayerNames = layers,
        .enabledExtensionCount = n_exts,
        .ppEnabledExtensionNames = exts,
    };
    VkResult r = vkCreateInstance(&info, NULL, out);
    if (r != VK_SUCCESS) {
        *out = VK_NULL_HANDLE;
        baton_status s = vk_fail(err, r, "vkCreateInstance");
        if (r == VK_ERROR_INCOMPATIBLE_DRIVER) s = BATON_ERR_UNAVAILABLE;
        return s;
    }
    if (validation) {
        PFN_vkCreateDebugUtilsMessengerEXT create = (PFN_vkCreateDebugUtilsMessengerEXT)
            vkGetInstanceProcAddr(*out, "vkCreateDebugUtilsMessengerEXT");
        dbg.pNext = NULL; /* the features were for the instance */
        if (create == NULL || create(*out, &dbg, NULL, messenger) != VK_SUCCESS) {
            vkDestroyInstance(*out, NULL);
            *out = VK_NULL_HANDLE;
            return baton_fail(err, BATON_ERR_DEVICE, "cannot create the validation messenger");
        }
    }
    return BATON_OK;
}

static void instance_destroy(VkInstance instance, VkDebugUtilsMessengerEXT messenger) {
    if (messenger != VK_NULL_HANDLE) {
        PFN_vkDestroyDebugUtilsMessengerEXT destroy = (PFN_vkDestroyDebugUtilsMessengerEXT)
            vkGetInstanceProcAddr(instance, "vkDestroyDebugUtilsMessengerEXT");
        if (destroy != NULL) destroy(instance, messenger, NULL);
    }
    if (instance != VK_NULL_HANDLE) vkDestroyInstance(instance, NULL);
}

/* One instance per validation mode (none, 1, sync), kept for the life of the process and shared
 * by every context and device listing: NVIDIA's driver (580.159.04 on the H100, run E) fails
 * vkCreateInstance with VK_ERROR_INCOMPATIBLE_DRIVER after enough create and destroy cycles in one
 * process, as test_vk_backend's hundred-odd backends found, and other projects report its
 * subgroups going wrong after a dozen. At exit, those no context still holds are destroyed. */
static struct {
    VkInstance instance;
    VkDebugUtilsMessengerEXT messenger;
    int users;
} shared_instances[3];
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static bool shared_atexit;

static void shared_instances_free(void) {
    pthread_mutex_lock(&shared_lock);
    for (int i = 0; i < 3; i++)
        if (shared_instances[i].instance != VK_NULL_HANDLE && shared_instances[i].users == 0) {
            instance_destroy(shared_instances[i].instance, shared_instances[i].messenger);
            shared_instances[i].instance = VK_NULL_HANDLE;
        }
    pthread_mutex_unlock(&shared_lock);
}

/* The process's instance for BATON_VK_VALIDATION's mode now, created on first use; a hold on it
 * until instance_release. */
static baton_status instance_acquire(VkInstance *out, baton_error *err) {
    int mode = validation_mode();
    baton_status s = BATON_OK;
    pthread_mutex_lock(&shared_lock);
    if (shared_instances[mode].instance == VK_NULL_HANDLE)
        s = instance_create(mode, &shared_instances[mode].instance,
                            &shared_instances[mode].messenger, err);
    if (s == BATON_OK) {
        shared_instances[mode].users++;
        *out = shared_instances[mode].instance;
        if (!shared_atexit) shared_atexit = atexit(shared_instances_free) == 0;
    }
    pthread_mutex_unlock(&shared_lock);
    return s;
}

static void instance_release(VkInstance instance) {
    pthread_mutex_lock(&shared_lock);
    for (int i = 0; i < 3; i++)
        if (instance != VK_NULL_HANDLE && shared_instances[i].instance == instance)
            shared_instances[i].users--;
    pthread_mutex_unlock(&shared_lock);
}

static bool has_device_ext(VkPhysicalDevice phys, const char *name) {
    uint32_t n = 0;
    if (vkEnumerateDeviceExtensionProperties(phys, NULL, &n, NULL) != VK_SUCCESS || n == 0)
        return false;
    VkExtensionProperties *props = calloc(n, sizeof *props);
    if (props == NULL) return false;
    bool found = false;
    if (vkEnumerateDeviceExtensionProperties(phys, NULL, &n, props) == VK_SUCCESS) {
        for (uint32_t i = 0; i < n; i++) found |= strcmp(props[i].extensionName, name) == 0;
    }
    free(props);
    return found;
}

/* The first queue family with compute; UINT32_MAX when none. */
static uint32_t compute_family(VkPhysicalDevice phys, uint32_t *timestamp_bits) {
    uint32_t n = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(phys, &n, NULL);
    VkQueueFamilyProperties props[64];
    if (n > 64) n = 64;
    vkGetPhysicalDeviceQueueFamilyProperties(phys, &n, props);
    for (uint32_t i = 0; i < n; i++) {
        if (props[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
            if (timestamp_bits) *timestamp_bits = props[i].timestampValidBits;
            return i;
        }
    }
    return UINT32_MAX;
}

/* The device's VK_NV_cooperative_matrix shapes (at most cap of them); 0 when it has none or the
 * query fails. */
static uint32_t nv_coopmat_props(VkInstance instance, VkPhysicalDevice phys,
                                 VkCooperativeMatrixPropertiesNV *props, uint32_t cap) {
    PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV props_fn =
        (PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV)vkGetInstanceProcAddr(
            instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV");
    uint32_t n = 0;
    if (props_fn == NULL || props_fn(phys, &n, NULL) != VK_SUCCESS) return 0;
    if (n > cap) n = cap;
    for (uint32_t i = 0; i < n; i++)
        props[i] = (VkCooperativeMatrixPropertiesNV){
            .sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV,
        };
    VkResult r = props_fn(phys, &n, props);
    return r == VK_SUCCESS || r == VK_INCOMPLETE ? n : 0;
}

static const char *component_name(VkComponentTypeNV t) {
    switch (t) {
    case VK_COMPONENT_TYPE_FLOAT16_NV: return "f16";
    case VK_COMPONENT_TYPE_FLOAT32_NV: return "f32";
    case VK_COMPONENT_TYPE_SINT8_NV: return "s8";
    case VK_COMPONENT_TYPE_UINT8_NV: return "u8";
    case VK_COMPONENT_TYPE_SINT32_NV: return "s32";
    case VK_COMPONENT_TYPE_UINT32_NV: return "u32";
    default: return "?";
    }
}

void vk_probe_device(VkInstance instance, VkPhysicalDevice phys, int index,
                     baton_vk_device_info *info) {
    memset(info, 0, sizeof *info);
    info->index = index;
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(phys, &props);
    snprintf(info->name, sizeof info->name, "%s", props.deviceName);
    const char *type = "other";
    int score = 0;
    switch (props.deviceType) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: type = "discrete"; score = 400; break;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: type = "integrated"; score = 300; break;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: type = "virtual"; score = 200; break;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: type = "cpu"; score = 100; break;
    default: break;
    }
    snprintf(info->type, sizeof info->type, "%s", type);
    info->vendor_id = props.vendorID;
    info->device_id = props.deviceID;
    info->api_version = props.apiVersion;
    info->driver_version = props.driverVersion;
    memcpy(info->pipeline_uuid, props.pipelineCacheUUID, sizeof info->pipeline_uuid);
    info->max_storage_range = props.limits.maxStorageBufferRange;
    info->max_shared_bytes = props.limits.maxComputeSharedMemorySize;
    info->max_workgroup_invocations = props.limits.maxComputeWorkGroupInvocations;
    info->max_alloc = 1ull << 30; /* the Vulkan 1.1 minimum until the device says more */
    uint32_t ts_bits = 0;
    uint32_t family = compute_family(phys, &ts_bits);
    info->timestamps = ts_bits > 0 && props.limits.timestampPeriod > 0.0f;

    VkPhysicalDeviceMemoryProperties mem;
    vkGetPhysicalDeviceMemoryProperties(phys, &mem);
    for (uint32_t i = 0; i < mem.memoryHeapCount; i++) {
        if (mem.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
            info->device_local_bytes += mem.memoryHeaps[i].size;
        else
            info->host_bytes += mem.memoryHeaps[i].size;
    }
    if (props.apiVersion < VK_API_VERSION_1_2 || family == UINT32_MAX) {
        info->score = score;
        return;
    }
    info->usable = true;
    info->score = 1000 + score;

    VkPhysicalDeviceVulkan12Properties p12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_PROPERTIES};
    VkPhysicalDeviceVulkan11Properties p11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_PROPERTIES, .pNext = &p12};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &p11};
    vkGetPhysicalDeviceProperties2(phys, &p2);
    info->subgroup_size = p11.subgroupSize;
    info->subgroup_arith = (p11.subgroupSupportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                           (p11.subgroupSupportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT);
    info->max_alloc = p11.maxMemoryAllocationSize;
    memcpy(info->device_uuid, p11.deviceUUID, sizeof info->device_uuid);
    snprintf(info->driver, sizeof info->driver, "%s%s%s", p12.driverName,
             p12.driverInfo[0] ? " " : "", p12.driverInfo);

    VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    VkPhysicalDeviceVulkan11Features f11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES, .pNext = &f12};
    VkPhysicalDeviceFeatures2 f2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f11,
    };
    vkGetPhysicalDeviceFeatures2(phys, &f2);
    info->storage16 = f11.storageBuffer16BitAccess;
    info->float16 = f12.shaderFloat16;
    info->int8 = f12.shaderInt8;
    info->coopmat_nv = has_device_ext(phys, "VK_NV_cooperative_matrix");
    info->coopmat_khr = has_device_ext(phys, "VK_KHR_cooperative_matrix");
    if (info->coopmat_nv) {
        VkCooperativeMatrixPropertiesNV cp[64];
        uint32_t n = nv_coopmat_props(instance, phys, cp, 64);
        size_t len = 0;
        for (uint32_t i = 0; i < n && len + 40 < sizeof info->coopmat_shapes; i++) {
            if (cp[i].scope != VK_SCOPE_SUBGROUP_NV) continue;
            len += (size_t)snprintf(info->coopmat_shapes + len, sizeof info->coopmat_shapes - len,
                                    "%s%ux%ux%u %s*%s+%s", len ? ", " : "", cp[i].MSize, cp[i].NSize,
                                    cp[i].KSize, component_name(cp[i].AType),
                                    component_name(cp[i].BType), component_name(cp[i].CType));
        }
    }
}

baton_status baton_vk_devices_list(baton_vk_device_info **out, int *count, baton_error *err) {
    *out = NULL;
    *count = 0;
    VkInstance instance;
    baton_status s = instance_acquire(&instance, err);
    if (s != BATON_OK) return s;
    uint32_t n = 0;
    VkResult r = vkEnumeratePhysicalDevices(instance, &n, NULL);
    if (r != VK_SUCCESS) {
        s = vk_fail(err, r, "vkEnumeratePhysicalDevices");
        goto out_instance;
    }
    if (n == 0) goto out_instance;
    VkPhysicalDevice *phys = calloc(n, sizeof *phys);
    baton_vk_device_info *infos = calloc(n, sizeof *infos);
    if (phys == NULL || infos == NULL) {
        free(phys);
        free(infos);
        s = baton_fail(err, BATON_ERR_NOMEM, "out of memory listing devices");
        goto out_instance;
    }
    r = vkEnumeratePhysicalDevices(instance, &n, phys);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
        free(phys);
        free(infos);
        s = vk_fail(err, r, "vkEnumeratePhysicalDevices");
        goto out_instance;
    }
    for (uint32_t i = 0; i < n; i++) vk_probe_device(instance, phys[i], (int)i, &infos[i]);
    free(phys);
    *out = infos;
    *count = (int)n;
out_instance:
    instance_release(instance);
    return s;
}

/* The best usable device: highest score, then most device-local memory; -1 when none. */
static int best_device(const baton_vk_device_info *infos, int n) {
    int best = -1;
    for (int i = 0; i < n; i++) {
        if (!infos[i].usable) continue;
        if (best < 0 || infos[i].score > infos[best].score ||
            (infos[i].score == infos[best].score &&
             infos[i].device_local_bytes > infos[best].device_local_bytes))
            best = i;
    }
    return best;
}

baton_status baton_vk_device_resolve(const char *spec, int *device_index, baton_error *err) {
    *device_index = -1;
    if (spec == NULL || spec[0] == '\0' || strcmp(spec, "best") == 0) return BATON_OK;
    char *end = NULL;
    long v = strtol(spec, &end, 10);
    if (end != spec && *end == '\0') {
        if (v < 0 || v > 1000) return baton_fail(err, BATON_ERR_ARG, "device %s: out of range", spec);
        *device_index = (int)v;
        return BATON_OK;
    }
    baton_vk_device_info *infos;
    int n;
    baton_status s = baton_vk_devices_list(&infos, &n, err);
    if (s != BATON_OK) return s;
    for (int i = 0; i < n; i++) {
        if (strcasestr(infos[i].name, spec) != NULL) {
            *device_index = i;
            free(infos);
            return BATON_OK;
        }
    }
    free(infos);
    return baton_fail(err, BATON_ERR_UNAVAILABLE, "no Vulkan device's name contains \"%s\"", spec);
}

static int memory_type(const vk_context *ctx, uint32_t bits, VkMemoryPropertyFlags want,
                       VkMemoryPropertyFlags avoid) {
    for (uint32_t i = 0; i < ctx->mem.memoryTypeCount; i++) {
        VkMemoryPropertyFlags f = ctx->mem.memoryTypes[i].propertyFlags;
        if ((bits & (1u << i)) && (f & want) == want && (f & avoid) == 0) return (int)i;
    }
    return -1;
}

baton_status vk_buffer_create(vk_context *ctx, VkDeviceSize size, bool host_visible,
                              vk_buffer *out, baton_error *err) {
    memset(out, 0, sizeof *out);
    if (size == 0) size = 4;
    size = (size + 15) & ~(VkDeviceSize)15;
    if (size > ctx->info.max_alloc)
        return baton_fail(err, BATON_ERR_NOMEM, "a buffer of %llu bytes exceeds the device's "
                          "maxMemoryAllocationSize (%llu)", (unsigned long long)size,
                          (unsigned long long)ctx->info.max_alloc);
    VkBufferCreateInfo bi = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                 VK_BUFFER_USAGE_TRANSFER_DST_BIT,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VkResult r = vkCreateBuffer(ctx->device, &bi, NULL, &out->buffer);
    if (r != VK_SUCCESS) return vk_fail(err, r, "vkCreateBuffer");
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(ctx->device, out->buffer, &req);
    int type;
    if (host_visible) {
        VkMemoryPropertyFlags hv = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
        type = memory_type(ctx, req.memoryTypeBits, hv | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, 0);
        if (type < 0) type = memory_type(ctx, req.memoryTypeBits, hv, 0);
    } else {
        type = memory_type(ctx, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0);
        if (type < 0) type = memory_type(ctx, req.memoryTypeBits, 0, 0);
    }
    if (type < 0) {
        vkDestroyBuffer(ctx->device, out->buffer, NULL);
        out->buffer = VK_NULL_HANDLE;
        return baton_fail(err, BATON_ERR_DEVICE, "no suitable memory type for a buffer");
    }
    VkMemoryAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
        .allocationSize = req.size,
        .memoryTypeIndex = (uint32_t)type,
    };
    r = vkAllocateMemory(ctx->device, &ai, NULL, &out->memory);
    if (r != VK_SUCCESS) {
        vkDestroyBuffer(ctx->device, out->buffer, NULL);
        out->buffer = VK_NULL_HANDLE;
        out->memory = VK_NULL_HANDLE;
        baton_status s = vk_fail(err, r, "vkAllocateMemory");
        baton_error_prefix(err, "%.1f MiB %s", (double)size / (1 << 20),
                           host_visible ? "host-visible" : "device-local");
        return s;
    }
    r = vkBindBufferMemory(ctx->device, out->buffer, out->memory, 0);
    if (r == VK_SUCCESS && host_visible) r = vkMapMemory(ctx->device, out->memory, 0, VK_WHOLE_SIZE, 0, &out->mapped);
    if (r != VK_SUCCESS) {
        vkFreeMemory(ctx->device, out->memory, NULL);
        vkDestroyBuffer(ctx->device, out->buffer, NULL);
        memset(out, 0, sizeof *out);
        return vk_fail(err, r, "vkBindBufferMemory/vkMapMemory");
    }
    out->size = size;
    return BATON_OK;
}

/* Forgets every cached descriptor set when one binds buffer: a later buffer may get the same
 * handle, and must not find a set that points at freed memory. Only at teardown or in tests. */
static void dset_forget(vk_context *ctx, VkBuffer buffer) {
    if (ctx->dsets == NULL || ctx->n_dsets == 0) return;
    bool found = false;
    for (int i = 0; i < VK_DSET_CACHE && !found; i++) {
        if (!ctx->dsets[i].used) continue;
        for (int j = 0; j < VK_BINDINGS; j++) found |= ctx->dsets[i].key[3 * j] == (uint64_t)(uintptr_t)buffer;
    }
    if (!found) return;
    vkResetDescriptorPool(ctx->device, ctx->dpool, 0);
    memset(ctx->dsets, 0, VK_DSET_CACHE * sizeof *ctx->dsets);
    ctx->n_dsets = 0;
    vk_replays_invalidate(ctx); /* their sets are gone */
}

void vk_buffer_destroy(vk_context *ctx, vk_buffer *buf) {
    if (buf->buffer == VK_NULL_HANDLE) return;
    dset_forget(ctx, buf->buffer);
    if (buf->mapped) vkUnmapMemory(ctx->device, buf->memory);
    vkDestroyBuffer(ctx->device, buf->buffer, NULL);
    vkFreeMemory(ctx->device, buf->memory, NULL);
    memset(buf, 0, sizeof *buf);
}

/* Whether the device can run matmul_coop.comp: VK_NV_cooperative_matrix with the 16x8x8
 * fp16 x fp16 + fp32 subgroup product, its feature, shaderFloat16, 16-bit storage buffers, the
 * Vulkan memory model, and subgroups of 32. Otherwise *why says what is missing. */
static bool coopmat_supported(VkInstance instance, VkPhysicalDevice phys,
                              const baton_vk_device_info *info, char *why, size_t why_size) {
    if (!info->coopmat_nv) {
        snprintf(why, why_size, "the device lacks VK_NV_cooperative_matrix");
        return false;
    }
    if (info->subgroup_size != 32) {
        snprintf(why, why_size, "subgroups of %u, not 32", info->subgroup_size);
        return false;
    }
    VkPhysicalDeviceCooperativeMatrixFeaturesNV cf = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV,
    };
    VkPhysicalDeviceVulkan12Features f12 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, .pNext = &cf,
    };
    VkPhysicalDeviceVulkan11Features f11 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES, .pNext = &f12,
    };
    VkPhysicalDeviceFeatures2 f2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f11,
    };
    vkGetPhysicalDeviceFeatures2(phys, &f2);
    if (!cf.cooperativeMatrix || !f12.shaderFloat16 || !f12.vulkanMemoryModel ||
        !f11.storageBuffer16BitAccess) {
        snprintf(why, why_size, "features: cooperativeMatrix %d, shaderFloat16 %d, "
                 "vulkanMemoryModel %d, storageBuffer16BitAccess %d", cf.cooperativeMatrix,
                 f12.shaderFloat16, f12.vulkanMemoryModel, f11.storageBuffer16BitAccess);
        return false;
    }
    VkCooperativeMatrixPropertiesNV props[64];
    uint32_t n = nv_coopmat_props(instance, phys, props, 64);
    if (n == 0) {
        snprintf(why, why_size, "no cooperative-matrix properties");
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        const VkCooperativeMatrixPropertiesNV *p = &props[i];
        if (p->MSize == 16 && p->NSize == 8 && p->KSize == 8 &&
            p->AType == VK_COMPONENT_TYPE_FLOAT16_NV && p->BType == VK_COMPONENT_TYPE_FLOAT16_NV &&
            p->CType == VK_COMPONENT_TYPE_FLOAT32_NV && p->DType == VK_COMPONENT_TYPE_FLOAT32_NV &&
            p->scope == VK_SCOPE_SUBGROUP_NV)
            return true;
    }
    snprintf(why, why_size, "no 16x8x8 fp16 x fp16 + fp32 subgroup product among %u", n);
    return false;
}

bool vk_coopmat_use(vk_context *ctx, bool on, baton_error *err) {
    if (ctx->coopmat != on) vk_replays_invalidate(ctx);
    if (!on) {
        ctx->coopmat = false;
        vk_buffer_destroy(ctx, &ctx->xsplit); /* the fp32 path has no use for it */
        return true;
    }
    if (ctx->coopmat_ready) {
        baton_error coop_err = {0};
        if (vk_coop_select(ctx, ctx->coop_few, ctx->coop_many, ctx->coop_large, &coop_err) == BATON_OK &&
            vk_coop_xsplit_reserve(ctx, ctx->xsplit_bytes, &coop_err) == BATON_OK) {
            ctx->coopmat = true;
            return true;
        }
        ctx->coopmat_ready = false;
        snprintf(ctx->coopmat_why, sizeof ctx->coopmat_why, "%.150s", coop_err.msg);
    }
    if (err != NULL)
        baton_fail(err, BATON_ERR_UNSUPPORTED, "no cooperative-matrix matmul: %s", ctx->coopmat_why);
    return false;
}

baton_status vk_pipeline_ensure(vk_context *ctx, baton_shader_id shader, baton_error *err) {
    if (ctx->pipelines[shader] != VK_NULL_HANDLE) return BATON_OK;
    const baton_spirv *spv = &baton_spirv_table[shader];
    VkShaderModuleCreateInfo mi = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
        .codeSize = spv->size,
        .pCode = (const uint32_t *)(const void *)spv->code,
    };
    VkResult r = ctx->modules[shader] != VK_NULL_HANDLE
                     ? VK_SUCCESS
                     : vkCreateShaderModule(ctx->device, &mi, NULL, &ctx->modules[shader]);
    if (r != VK_SUCCESS) {
        ctx->modules[shader] = VK_NULL_HANDLE;
        baton_status s = vk_fail(err, r, "vkCreateShaderModule");
        baton_error_prefix(err, "shader %s", spv->name);
        return s;
    }
    VkComputePipelineCreateInfo cpi = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {
            .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
            .stage = VK_SHADER_STAGE_COMPUTE_BIT,
            .module = ctx->modules[shader],
            .pName = "main",
        },
        .layout = ctx->pipe_layout,
    };
    r = vkCreateComputePipelines(ctx->device, VK_NULL_HANDLE, 1, &cpi, NULL, &ctx->pipelines[shader]);
    if (r != VK_SUCCESS) {
        ctx->pipelines[shader] = VK_NULL_HANDLE;
        baton_status s = vk_fail(err, r, "vkCreateComputePipelines");
        baton_error_prefix(err, "shader %s", spv->name);
        return s;
    }
    return BATON_OK;
}

bool vk_coop_mode_parse(const char *env, vk_coop_mode *mode, bool *emulate) {
    static const struct {
        const char *value;
        vk_coop_mode mode;
        bool emulate;
    } values[] = {
        {"", VK_COOP_AUTO, false},         {"auto", VK_COOP_AUTO, false},
        {"0", VK_COOP_OFF, false},         {"1", VK_COOP_ON, false},
        {"ready", VK_COOP_READY, false},   {"emulate", VK_COOP_ON, true},
        {"emulate-ready", VK_COOP_READY, true}, {"emulate-auto", VK_COOP_AUTO, true},
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        if (strcmp(env != NULL ? env : "", values[i].value) == 0) {
            *mode = values[i].mode;
            *emulate = values[i].emulate;
            return true;
        }
    return false;
}

baton_status vk_context_init(vk_context *ctx, int device_index, baton_error *err) {
    memset(ctx, 0, sizeof *ctx);
    const char *coop_env = getenv("BATON_VK_COOPMAT");
    bool coop_emulate = false;
    if (!vk_coop_mode_parse(coop_env, &ctx->coop_mode, &coop_emulate))
        return baton_fail(err, BATON_ERR_ARG, "BATON_VK_COOPMAT=%.60s: expected auto (or unset: "
                          "the tensor cores where the device has them and tuning finds them "
                          "faster), 1 (always), 0 (never) or ready (set up, not used)", coop_env);
    ctx->queue_family = UINT32_MAX;
    double timeout_s = 120.0;
    const char *t = getenv("BATON_VK_TIMEOUT_S");
    if (t != NULL && atof(t) > 0) timeout_s = atof(t);
    ctx->timeout_ns = (uint64_t)(timeout_s * 1e9);

    baton_status s = instance_acquire(&ctx->instance, err);
    if (s != BATON_OK) return s;

    uint32_t n = 0;
    VkResult r = vkEnumeratePhysicalDevices(ctx->instance, &n, NULL);
    if (r != VK_SUCCESS) {
        s = vk_fail(err, r, "vkEnumeratePhysicalDevices");
        goto out_instance;
    }
    if (n == 0) {
        s = baton_fail(err, BATON_ERR_UNAVAILABLE, "no Vulkan device (is a driver installed?)");
        goto out_instance;
    }
    VkPhysicalDevice phys[32];
    baton_vk_device_info infos[32];
    if (n > 32) n = 32;
    r = vkEnumeratePhysicalDevices(ctx->instance, &n, phys);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
        s = vk_fail(err, r, "vkEnumeratePhysicalDevices");
        goto out_instance;
    }
    for (uint32_t i = 0; i < n; i++) vk_probe_device(ctx->instance, phys[i], (int)i, &infos[i]);
    int pick = device_index < 0 ? best_device(infos, (int)n) : device_index;
    if (pick < 0 || pick >= (int)n) {
        s = baton_fail(err, BATON_ERR_UNAVAILABLE, device_index < 0
                       ? "no usable Vulkan device (Vulkan 1.2 with a compute queue)"
                       : "no Vulkan device %d (there are %u)", device_index, n);
        goto out_instance;
    }
    if (!infos[pick].usable) {
        s = baton_fail(err, BATON_ERR_UNAVAILABLE, "Vulkan device %d (%s) lacks Vulkan 1.2 or a "
                       "compute queue", pick, infos[pick].name);
        goto out_instance;
    }
    ctx->phys = phys[pick];
    ctx->info = infos[pick];
    vkGetPhysicalDeviceMemoryProperties(ctx->phys, &ctx->mem);
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(ctx->phys, &props);
    ctx->storage_align = props.limits.minStorageBufferOffsetAlignment;
    if (ctx->storage_align < 16) ctx->storage_align = 16;
    ctx->timestamp_period_ns = props.limits.timestampPeriod;
    ctx->queue_family = compute_family(ctx->phys, NULL);

    float priority = 1.0f;
    VkDeviceQueueCreateInfo qi = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = ctx->queue_family,
        .queueCount = 1,
        .pQueuePriorities = &priority,
    };
    VkDeviceCreateInfo di = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qi,
    };
    /* The tensor-core matmul where the device has it, unless BATON_VK_COOPMAT=0 (or its
     * emulation, which needs nothing of the device): otherwise the device is created exactly as
     * without it. */
    bool coop_asked = ctx->coop_mode != VK_COOP_OFF && !coop_emulate;
    VkPhysicalDeviceCooperativeMatrixFeaturesNV coop_on = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV,
        .cooperativeMatrix = VK_TRUE,
    };
    VkPhysicalDeviceVulkan12Features f12_on = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
        .pNext = &coop_on,
        .shaderFloat16 = VK_TRUE,
        .vulkanMemoryModel = VK_TRUE,
    };
    VkPhysicalDeviceVulkan11Features f11_on = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
        .pNext = &f12_on,
        .storageBuffer16BitAccess = VK_TRUE, /* the weights' fragments load as float16_t */
    };
    const char *coop_ext = "VK_NV_cooperative_matrix";
    snprintf(ctx->coopmat_why, sizeof ctx->coopmat_why, "BATON_VK_COOPMAT=0");
    if (coop_asked && coopmat_supported(ctx->instance, ctx->phys, &ctx->info, ctx->coopmat_why,
                                        sizeof ctx->coopmat_why)) {
        di.pNext = &f11_on;
        di.enabledExtensionCount = 1;
        di.ppEnabledExtensionNames = &coop_ext;
        r = vkCreateDevice(ctx->phys, &di, NULL, &ctx->device);
        if (r == VK_SUCCESS) {
            ctx->coopmat_ready = true;
        } else {
            snprintf(ctx->coopmat_why, sizeof ctx->coopmat_why, "vkCreateDevice with "
                     "VK_NV_cooperative_matrix failed (%d)", (int)r);
            di.pNext = NULL;
            di.enabledExtensionCount = 0;
            di.ppEnabledExtensionNames = NULL;
        }
    }
    r = ctx->coopmat_ready ? VK_SUCCESS : vkCreateDevice(ctx->phys, &di, NULL, &ctx->device);
    if (r != VK_SUCCESS) {
        ctx->device = VK_NULL_HANDLE;
        s = vk_fail(err, r, "vkCreateDevice");
        goto out_instance;
    }
    vkGetDeviceQueue(ctx->device, ctx->queue_family, 0, &ctx->queue);

    VkCommandPoolCreateInfo pi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = ctx->queue_family,
    };
    r = vkCreateCommandPool(ctx->device, &pi, NULL, &ctx->pool);
    if (r != VK_SUCCESS) {
        s = vk_fail(err, r, "vkCreateCommandPool");
        goto out_device;
    }
    VkCommandBufferAllocateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = ctx->pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    r = vkAllocateCommandBuffers(ctx->device, &ci, &ctx->cmd_once);
    for (int i = 0; i < VK_REPLAYS && r == VK_SUCCESS; i++)
        r = vkAllocateCommandBuffers(ctx->device, &ci, &ctx->replays[i].cmd);
    if (r != VK_SUCCESS) {
        s = vk_fail(err, r, "vkAllocateCommandBuffers");
        goto out_pool;
    }
    ctx->cmd = ctx->cmd_once;
    ctx->replay_cur = -1;
    VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    r = vkCreateFence(ctx->device, &fi, NULL, &ctx->fence);
    if (r != VK_SUCCESS) {
        s = vk_fail(err, r, "vkCreateFence");
        goto out_pool;
    }
    if (ctx->info.timestamps) {
        VkQueryPoolCreateInfo qpi = {
            .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
            .queryType = VK_QUERY_TYPE_TIMESTAMP,
            .queryCount = 2 + VK_PROF_MAX,
        };
        r = vkCreateQueryPool(ctx->device, &qpi, NULL, &ctx->queries);
        if (r != VK_SUCCESS) {
            s = vk_fail(err, r, "vkCreateQueryPool");
            goto out_fence;
        }
    }

    VkDescriptorSetLayoutBinding binds[VK_BINDINGS];
    for (uint32_t i = 0; i < VK_BINDINGS; i++) {
        binds[i] = (VkDescriptorSetLayoutBinding){
            .binding = i,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
    }
    VkDescriptorSetLayoutCreateInfo li = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = VK_BINDINGS,
        .pBindings = binds,
    };
    r = vkCreateDescriptorSetLayout(ctx->device, &li, NULL, &ctx->dset_layout);
    if (r != VK_SUCCESS) {
        s = vk_fail(err, r, "vkCreateDescriptorSetLayout");
        goto out_queries;
    }
    VkPushConstantRange push = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .size = VK_PUSH_BYTES};
    VkPipelineLayoutCreateInfo pli = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &ctx->dset_layout,
        .pushConstantRangeCount = 1,
        .pPushConstantRanges = &push,
    };
    r = vkCreatePipelineLayout(ctx->device, &pli, NULL, &ctx->pipe_layout);
    if (r != VK_SUCCESS) {
        s = vk_fail(err, r, "vkCreatePipelineLayout");
        goto out_dset_layout;
    }
    for (int i = 0; i < BATON_SHADER_COUNT; i++) {
        if (baton_spirv_table[i].on_demand) continue; /* the bench's sweep variants */
        s = vk_pipeline_ensure(ctx, (baton_shader_id)i, err);
        if (s != BATON_OK) goto out_pipelines;
    }
    VkDescriptorPoolSize ps = {
        .type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
        .descriptorCount = VK_DSET_CACHE * VK_BINDINGS,
    };
    VkDescriptorPoolCreateInfo dpi = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
        .maxSets = VK_DSET_CACHE,
        .poolSizeCount = 1,
        .pPoolSizes = &ps,
    };
    r = vkCreateDescriptorPool(ctx->device, &dpi, NULL, &ctx->dpool);
    if (r != VK_SUCCESS) {
        s = vk_fail(err, r, "vkCreateDescriptorPool");
        goto out_pipelines;
    }
    ctx->dsets = calloc(VK_DSET_CACHE, sizeof *ctx->dsets);
    if (ctx->dsets == NULL) {
        s = baton_fail(err, BATON_ERR_NOMEM, "out of memory for the descriptor cache");
        goto out_dpool;
    }
    s = vk_buffer_create(ctx, 256, false, &ctx->dummy, err);
    if (s != BATON_OK) goto out_dsets;
    /* The matmul configurations for this kind of device (vk_kernel_defaults). */
    ctx->matvec = VK_MATVEC_FALLBACK;
    ctx->mm8 = 0;
    ctx->mm32 = ctx->mm64 = VK_BATCHED_32_DEFAULT;
    ctx->coop_few = 0;
    ctx->coop_many = ctx->coop_large = VK_COOP_MANY_DEFAULT;
    vk_kernel_defaults(ctx, &ctx->start.matvec, &ctx->start.mm8, &ctx->start.mm32, &ctx->start.mm64);
    for (int kind = 0; kind < VK_KINDS; kind++)
        for (int role = 0; role < VK_ROLES; role++) ctx->role_config[kind][role] = ctx->start.role_config[kind][role] = -1;
    ctx->start.coop_few = 0;
    ctx->start.coop_many = ctx->start.coop_large = VK_COOP_MANY_DEFAULT;
    s = vk_kernels_reset(ctx, err);
    if (s != BATON_OK) goto out_dummy;
    /* BATON_VK_COOPMAT=1: the variant is used from the first step, so it must build here (if it
     * does not, the engine goes on without it). Otherwise it builds at first use
     * (vk_coopmat_use): the backend's tuning (auto) or the caller's choice (ready). */
    if (coop_emulate) ctx->coopmat_ready = ctx->coopmat_emulated = true;
    if (ctx->coopmat_ready && ctx->coop_mode == VK_COOP_ON) vk_coopmat_use(ctx, true, NULL);
    return BATON_OK;

out_dummy:
    vk_buffer_destroy(ctx, &ctx->dummy);
out_dsets:
    free(ctx->dsets);
    ctx->dsets = NULL;
out_dpool:
    vkDestroyDescriptorPool(ctx->device, ctx->dpool, NULL);
out_pipelines:
    for (int i = BATON_SHADER_COUNT - 1; i >= 0; i--) {
        if (ctx->pipelines[i]) vkDestroyPipeline(ctx->device, ctx->pipelines[i], NULL);
        if (ctx->modules[i]) vkDestroyShaderModule(ctx->device, ctx->modules[i], NULL);
    }
    vkDestroyPipelineLayout(ctx->device, ctx->pipe_layout, NULL);
out_dset_layout:
    vkDestroyDescriptorSetLayout(ctx->device, ctx->dset_layout, NULL);
out_queries:
    if (ctx->queries) vkDestroyQueryPool(ctx->device, ctx->queries, NULL);
out_fence:
    vkDestroyFence(ctx->device, ctx->fence, NULL);
out_pool:
    vkDestroyCommandPool(ctx->device, ctx->pool, NULL);
out_device:
    vkDestroyDevice(ctx->device, NULL);
out_instance:
    instance_release(ctx->instance);
    memset(ctx, 0, sizeof *ctx);
    return s;
}

void vk_context_free(vk_context *ctx) {
    if (ctx->device == VK_NULL_HANDLE) return;
    /* After a timed-out wait the device may never go idle; destroy without waiting then. */
    if (!ctx->lost) vkDeviceWaitIdle(ctx->device);
    vk_buffer_destroy(ctx, &ctx->xsplit);
    vk_buffer_destroy(ctx, &ctx->dummy);
    free(ctx->dsets);
    vkDestroyDescriptorPool(ctx->device, ctx->dpool, NULL);
    for (int i = BATON_SHADER_COUNT - 1; i >= 0; i--) {
        vkDestroyPipeline(ctx->device, ctx->pipelines[i], NULL);
        vkDestroyShaderModule(ctx->device, ctx->modules[i], NULL);
    }
    vkDestroyPipelineLayout(ctx->device, ctx->pipe_layout, NULL);
    vkDestroyDescriptorSetLayout(ctx->device, ctx->dset_layout, NULL);
    if (ctx->queries) vkDestroyQueryPool(ctx->device, ctx->queries, NULL);
    vkDestroyFence(ctx->device, ctx->fence, NULL);
    vkDestroyCommandPool(ctx->device, ctx->pool, NULL);
    vkDestroyDevice(ctx->device, NULL);
    instance_release(ctx->instance);
    memset(ctx, 0, sizeof *ctx);
}

/* Profiling: a timestamp after every command so far, the interval before it charged to the first
 * shader dispatched in it (a product, where a state save shares its group). */
static void prof_mark(vk_context *ctx) {
    if (!ctx->prof.on || ctx->queries == VK_NULL_HANDLE || ctx->replaying || ctx->prof.n >= VK_PROF_MAX)
        return;
    vkCmdWriteTimestamp(ctx->cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, ctx->queries, 2 + ctx->prof.n);
    ctx->prof.shader[ctx->prof.n++] = ctx->prof.first;
    ctx->prof.first = -1;
}

/* Adds the intervals of the command buffer that just ran to the profile. */
static void prof_collect(vk_context *ctx) {
    vk_profile *p = &ctx->prof;
    double d[VK_PROF_MAX];
    if (!p->on || !vk_timestamps_deltas(ctx, 2, (int)p->n, d)) return;
    for (uint32_t i = 1; i < p->n; i++) {
        int s = p->shader[i] >= 0 ? p->shader[i] : BATON_SHADER_COUNT;
        p->secs[s] += d[i - 1];
        p->groups[s]++;
    }
}

static baton_status begin_recording(vk_context *ctx, VkCommandBuffer cmd, bool once, baton_error *err) {
    if (ctx->lost)
        return baton_fail(err, BATON_ERR_UNAVAILABLE, "the Vulkan device stopped answering earlier");
    ctx->cmd = cmd;
    ctx->replaying = false;
    VkResult r = vkResetCommandBuffer(ctx->cmd, 0);
    if (r != VK_SUCCESS) return vk_fail(err, r, "vkResetCommandBuffer");
    VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = once ? VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT : 0,
    };
    r = vkBeginCommandBuffer(ctx->cmd, &bi);
    if (r != VK_SUCCESS) return vk_fail(err, r, "vkBeginCommandBuffer");
    if (ctx->queries) vkCmdResetQueryPool(ctx->cmd, ctx->queries, 0, ctx->prof.on ? 2 + VK_PROF_MAX : 2);
    ctx->prof.n = 0;
    ctx->prof.first = -1;
    if (ctx->prof.on) prof_mark(ctx);
    return BATON_OK;
}

baton_status vk_begin(vk_context *ctx, baton_error *err) {
    ctx->replay_cur = -1;
    return begin_recording(ctx, ctx->cmd_once, true, err);
}

baton_status vk_begin_keyed(vk_context *ctx, const uint64_t key[VK_REPLAY_KEY], bool *replay,
                            baton_error *err) {
    *replay = false;
    if (ctx->prof.on) return vk_begin(ctx, err); /* its timestamps: recorded each time, kept never */
    int lru = 0;
    for (int i = 0; i < VK_REPLAYS && !ctx->lost; i++) {
        vk_replay *e = &ctx->replays[i];
        if (e->valid && e->gen == ctx->replay_gen && memcmp(e->key, key, sizeof e->key) == 0) {
            e->last_used = ++ctx->replay_clock;
            ctx->cmd = e->cmd;
            ctx->replay_cur = -1;
            ctx->replaying = true;
            ctx->n_dispatches = e->n_dispatches;
            ctx->n_barriers = e->n_barriers;
            *replay = true;
            return BATON_OK;
        }
        if (ctx->replays[i].last_used < ctx->replays[lru].last_used) lru = i;
    }
    vk_replay *e = &ctx->replays[lru];
    e->valid = false; /* until the new recording has run */
    memcpy(e->key, key, sizeof e->key);
    e->gen = ctx->replay_gen;
    e->last_used = ++ctx->replay_clock;
    ctx->replay_cur = lru;
    return begin_recording(ctx, e->cmd, false, err);
}

void vk_replays_invalidate(vk_context *ctx) { ctx->replay_gen++; }

baton_status vk_submit_wait(vk_context *ctx, baton_error *err) {
    VkResult r;
    if (!ctx->replaying) {
        prof_mark(ctx); /* the group after the last barrier */
        r = vkEndCommandBuffer(ctx->cmd);
        if (r != VK_SUCCESS) return vk_fail(err, r, "vkEndCommandBuffer");
        if (ctx->n_dsets >= VK_DSET_CACHE)
            return baton_fail(err, BATON_ERR_NOMEM, "descriptor cache full (%d sets)", VK_DSET_CACHE);
    }
    r = vkResetFences(ctx->device, 1, &ctx->fence);
    if (r != VK_SUCCESS) return vk_fail(err, r, "vkResetFences");
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .commandBufferCount = 1,
        .pCommandBuffers = &ctx->cmd,
    };
    r = vkQueueSubmit(ctx->queue, 1, &si, ctx->fence);
    if (r != VK_SUCCESS) {
        if (r == VK_ERROR_DEVICE_LOST) ctx->lost = true;
        return vk_fail(err, r, "vkQueueSubmit");
    }
    r = vkWaitForFences(ctx->device, 1, &ctx->fence, VK_TRUE, ctx->timeout_ns);
    if (r == VK_TIMEOUT) {
        ctx->lost = true;
        return baton_fail(err, BATON_ERR_UNAVAILABLE, "the Vulkan device did not finish within "
                          "%.0f s (BATON_VK_TIMEOUT_S)", (double)ctx->timeout_ns * 1e-9);
    }
    if (r != VK_SUCCESS) {
        if (r == VK_ERROR_DEVICE_LOST) ctx->lost = true;
        return vk_fail(err, r, "vkWaitForFences");
    }
    prof_collect(ctx);
    if (ctx->replay_cur >= 0) { /* a new recording ran: keep it for its key */
        vk_replay *e = &ctx->replays[ctx->replay_cur];
        e->valid = e->gen == ctx->replay_gen;
        e->n_dispatches = ctx->n_dispatches;
        e->n_barriers = ctx->n_barriers;
        ctx->replay_cur = -1;
    }
    return BATON_OK;
}

/* FNV-1a over the binding key. */
static uint64_t key_hash(const uint64_t *key, int n) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) {
        h ^= key[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* The descriptor set binding binds (unused bindings get the dummy buffer), made once and cached;
 * VK_NULL_HANDLE when the cache is full (vk_submit_wait then fails the step). */
static VkDescriptorSet dset_get(vk_context *ctx, const vk_bind *binds, int n_binds) {
    uint64_t key[VK_BINDINGS * 3];
    VkDescriptorBufferInfo infos[VK_BINDINGS];
    for (int i = 0; i < VK_BINDINGS; i++) {
        const vk_buffer *b = i < n_binds && binds[i].buf != NULL ? binds[i].buf : &ctx->dummy;
        VkDeviceSize off = i < n_binds && binds[i].buf != NULL ? binds[i].offset : 0;
        VkDeviceSize range = i < n_binds && binds[i].buf != NULL && binds[i].range ? binds[i].range
                                                                                  : b->size - off;
        if (range > ctx->info.max_storage_range) range = ctx->info.max_storage_range;
        infos[i] = (VkDescriptorBufferInfo){.buffer = b->buffer, .offset = off, .range = range};
        key[3 * i] = (uint64_t)(uintptr_t)b->buffer;
        key[3 * i + 1] = off;
        key[3 * i + 2] = range;
    }
    uint64_t h = key_hash(key, VK_BINDINGS * 3);
    for (int probe = 0; probe < VK_DSET_CACHE; probe++) {
        vk_dset_entry *e = &ctx->dsets[(h + (uint64_t)probe) % VK_DSET_CACHE];
        if (e->used && memcmp(e->key, key, sizeof key) == 0) return e->set;
        if (e->used) continue;
        if (ctx->n_dsets >= VK_DSET_CACHE - 1) break;
        VkDescriptorSetAllocateInfo ai = {
            .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
            .descriptorPool = ctx->dpool,
            .descriptorSetCount = 1,
            .pSetLayouts = &ctx->dset_layout,
        };
        if (vkAllocateDescriptorSets(ctx->device, &ai, &e->set) != VK_SUCCESS) break;
        VkWriteDescriptorSet writes[VK_BINDINGS];
        for (int i = 0; i < VK_BINDINGS; i++) {
            writes[i] = (VkWriteDescriptorSet){
                .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                .dstSet = e->set,
                .dstBinding = (uint32_t)i,
                .descriptorCount = 1,
                .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                .pBufferInfo = &infos[i],
            };
        }
        vkUpdateDescriptorSets(ctx->device, VK_BINDINGS, writes, 0, NULL);
        memcpy(e->key, key, sizeof key);
        e->used = true;
        ctx->n_dsets++;
        return e->set;
    }
    ctx->n_dsets = VK_DSET_CACHE; /* makes vk_submit_wait fail the step */
    return VK_NULL_HANDLE;
}

void vk_dispatch(vk_context *ctx, baton_shader_id shader, const vk_bind *binds, int n_binds,
                 const void *push, uint32_t push_size, uint32_t gx, uint32_t gy, uint32_t gz) {
    if (gx == 0 || gy == 0 || gz == 0 || ctx->replaying) return;
    assert(ctx->pipelines[shader] != VK_NULL_HANDLE); /* on_demand: vk_pipeline_ensure first */
    VkDescriptorSet set = dset_get(ctx, binds, n_binds);
    if (set == VK_NULL_HANDLE) return;
    vkCmdBindPipeline(ctx->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, ctx->pipelines[shader]);
    vkCmdBindDescriptorSets(ctx->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, ctx->pipe_layout, 0, 1, &set,
                            0, NULL);
    if (push_size) {
        vkCmdPushConstants(ctx->cmd, ctx->pipe_layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_size,
                           push);
    }
    vkCmdDispatch(ctx->cmd, gx, gy, gz);
    ctx->n_dispatches++;
    if (ctx->prof.first < 0) ctx->prof.first = (int)shader;
}

static void barrier(vk_context *ctx, bool transfers) {
    if (ctx->replaying) return;
    prof_mark(ctx);
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT,
    };
    VkPipelineStageFlags stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT;
    if (transfers) {
        mb.srcAccessMask |= VK_ACCESS_TRANSFER_WRITE_BIT;
        mb.dstAccessMask |= VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
        stages |= VK_PIPELINE_STAGE_TRANSFER_BIT;
    }
    vkCmdPipelineBarrier(ctx->cmd, stages, stages, 0, 1, &mb, 0, NULL, 0, NULL);
    ctx->n_barriers++;
}

void vk_barrier(vk_context *ctx) { barrier(ctx, true); }

void vk_barrier_compute(vk_context *ctx) { barrier(ctx, false); }

void vk_copy(vk_context *ctx, const vk_buffer *src, VkDeviceSize src_off, const vk_buffer *dst,
             VkDeviceSize dst_off, VkDeviceSize size) {
    if (size == 0 || ctx->replaying) return;
    VkBufferCopy region = {.srcOffset = src_off, .dstOffset = dst_off, .size = size};
    vkCmdCopyBuffer(ctx->cmd, src->buffer, dst->buffer, 1, &region);
}

void vk_timestamps_reset(vk_context *ctx, int first, int n) {
    if (ctx->queries == VK_NULL_HANDLE || ctx->replaying || first < 2 || n < 1 || first + n > 2 + VK_PROF_MAX)
        return;
    vkCmdResetQueryPool(ctx->cmd, ctx->queries, (uint32_t)first, (uint32_t)n);
}

bool vk_timestamps_deltas(vk_context *ctx, int first, int n, double *out) {
    uint64_t t[VK_PROF_MAX];
    if (ctx->queries == VK_NULL_HANDLE || first < 0 || n < 2 || first + n > 2 + VK_PROF_MAX ||
        vkGetQueryPoolResults(ctx->device, ctx->queries, (uint32_t)first, (uint32_t)n,
                              sizeof(uint64_t) * (size_t)n, t, sizeof t[0], VK_QUERY_RESULT_64_BIT) != VK_SUCCESS)
        return false;
    for (int i = 0; i + 1 < n; i++) out[i] = (double)(t[i + 1] - t[i]) * (double)ctx->timestamp_period_ns * 1e-9;
    return true;
}

void vk_timestamp(vk_context *ctx, int i) {
    if (ctx->queries == VK_NULL_HANDLE || ctx->replaying) return;
    vkCmdWriteTimestamp(ctx->cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, ctx->queries, (uint32_t)i);
}

double vk_elapsed_s(vk_context *ctx) {
    double d;
    return vk_timestamps_deltas(ctx, 0, 2, &d) ? d : -1.0;
}
