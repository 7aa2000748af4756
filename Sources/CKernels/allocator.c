// glibc allocator settings for model loading (see LoadingMemory.swift); <malloc.h> is not in Swift's Glibc module.
#include <malloc.h>
#include "ckernels.h"

void bk_allocator_loading(int loading) {
    if (loading) {
        // Every block of 1 MiB or more gets its own mapping, unmapped when freed.
        mallopt(M_MMAP_THRESHOLD, 1 << 20);
        mallopt(M_TRIM_THRESHOLD, 1 << 20);
    } else {
        // The allocator's own ceilings: activations up to 32 MiB are reused from the heap again.
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 64 << 20);
        malloc_trim(0);
    }
}
