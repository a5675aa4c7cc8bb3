/* A graphics card of a given size for llama.cpp's Vulkan backend on Mesa's software device (lavapipe).
 *
 * lavapipe's "device memory" is the process's own memory, so no operating-system limit can tell it from
 * the rest (the weights llama.cpp moves to the device replace the file mapping they came from). This
 * library, preloaded into a runner (LD_PRELOAD, see benchmarks/lavapipe.py), makes the device itself
 * small: vkAllocateMemory fails with VK_ERROR_OUT_OF_DEVICE_MEMORY, as a full card does, once the device
 * memory allocated would exceed DM_VK_DEVICE_BUDGET bytes; vkFreeMemory gives it back.
 *
 * ggml-vulkan loads every Vulkan function through vkGetInstanceProcAddr (Vulkan-Hpp's dynamic dispatcher,
 * initialised with the loader's exported symbol), so interposing that one symbol (and vkGetDeviceProcAddr)
 * is enough: they hand out the wrappers below for vkAllocateMemory and vkFreeMemory, and the loader's own
 * functions for everything else. Plain C, no Vulkan headers needed (the few types are declared here).
 *
 * One difference with a real card: ggml-vulkan's pinned host buffers ("Vulkan_Host") are Vulkan
 * allocations too, so they count here. The one made before the device buffers is the 0,5 MiB output
 * buffer (the device looks that much smaller: the safe side); the later ones (host compute buffers) that
 * no longer fit fall back to plain memory, as llama.cpp does when pinning fails ("Failed to allocate
 * pinned memory" in the runner's log), and the load goes on.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int32_t VkResult;
typedef void (*PFN_vkVoidFunction)(void);
typedef PFN_vkVoidFunction (*PFN_gipa)(void *instance, const char *name);
typedef PFN_vkVoidFunction (*PFN_gdpa)(void *device, const char *name);
typedef struct {
    int32_t sType;
    const void *pNext;
    uint64_t allocationSize;
    uint32_t memoryTypeIndex;
} VkMemoryAllocateInfo;
typedef VkResult (*PFN_allocate)(void *device, const VkMemoryAllocateInfo *info, const void *allocator,
                                 uint64_t *memory);
typedef void (*PFN_free)(void *device, uint64_t memory, const void *allocator);

#define VK_ERROR_OUT_OF_DEVICE_MEMORY (-2)
#define MAX_ALLOCATIONS 65536

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static PFN_allocate real_allocate;
static PFN_free real_free;
static uint64_t allocated;
static uint64_t handles[MAX_ALLOCATIONS];
static uint64_t sizes[MAX_ALLOCATIONS];

static uint64_t budget(void) {
    const char *text = getenv("DM_VK_DEVICE_BUDGET");
    return text ? strtoull(text, NULL, 10) : UINT64_MAX;
}

static VkResult allocate(void *device, const VkMemoryAllocateInfo *info, const void *allocator, uint64_t *memory) {
    pthread_mutex_lock(&lock);
    VkResult result = VK_ERROR_OUT_OF_DEVICE_MEMORY;
    int slot = -1;
    for (int i = 0; i < MAX_ALLOCATIONS && slot < 0; i++) {
        if (handles[i] == 0) slot = i;
    }
    if (slot >= 0 && allocated + info->allocationSize <= budget()) {
        result = real_allocate(device, info, allocator, memory);
        if (result == 0) {
            handles[slot] = *memory;
            sizes[slot] = info->allocationSize;
            allocated += info->allocationSize;
        }
    }
    pthread_mutex_unlock(&lock);
    return result;
}

static void release(void *device, uint64_t memory, const void *allocator) {
    pthread_mutex_lock(&lock);
    for (int i = 0; memory != 0 && i < MAX_ALLOCATIONS; i++) {
        if (handles[i] == memory) {
            allocated -= sizes[i];
            handles[i] = 0;
            break;
        }
    }
    real_free(device, memory, allocator);
    pthread_mutex_unlock(&lock);
}

static PFN_vkVoidFunction wrap(const char *name, PFN_vkVoidFunction real) {
    if (real == NULL) return NULL;
    if (strcmp(name, "vkAllocateMemory") == 0) {
        real_allocate = (PFN_allocate)real;
        return (PFN_vkVoidFunction)allocate;
    }
    if (strcmp(name, "vkFreeMemory") == 0) {
        real_free = (PFN_free)real;
        return (PFN_vkVoidFunction)release;
    }
    return real;
}

PFN_vkVoidFunction vkGetDeviceProcAddr(void *device, const char *name);

/* The loader's own function: llama_cpp loads its libraries (hence libvulkan) with RTLD_LOCAL, out of
 * RTLD_NEXT's reach, so the loader is opened by name (already loaded: the same handle). */
static void *loader_symbol(const char *name) {
    void *loader = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
    return loader ? dlsym(loader, name) : NULL;
}

PFN_vkVoidFunction vkGetInstanceProcAddr(void *instance, const char *name) {
    static PFN_gipa real;
    if (real == NULL) real = (PFN_gipa)loader_symbol("vkGetInstanceProcAddr");
    if (real == NULL) return NULL;
    if (strcmp(name, "vkGetInstanceProcAddr") == 0) return (PFN_vkVoidFunction)vkGetInstanceProcAddr;
    if (strcmp(name, "vkGetDeviceProcAddr") == 0) return (PFN_vkVoidFunction)vkGetDeviceProcAddr;
    return wrap(name, real(instance, name));
}

PFN_vkVoidFunction vkGetDeviceProcAddr(void *device, const char *name) {
    static PFN_gdpa real;
    if (real == NULL) real = (PFN_gdpa)loader_symbol("vkGetDeviceProcAddr");
    if (real == NULL) return NULL;
    if (strcmp(name, "vkGetDeviceProcAddr") == 0) return (PFN_vkVoidFunction)vkGetDeviceProcAddr;
    return wrap(name, real(device, name));
}
