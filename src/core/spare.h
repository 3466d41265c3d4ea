/* spare: a worker's cache of freed blocks of one size, for objects that
 * come and go many times per loop iteration (HTTP heads).
 *
 * glibc's per-thread cache keeps seven freed chunks of a size; a loop
 * iteration that finishes fifty proxied requests frees a hundred heads at
 * once, and all but seven of them take the heap's slow path to be freed
 * and again to be allocated. A spare keeps up to SPARE_MAX blocks instead.
 * The owner drains it when its heap settles, so an idle worker holds none.
 *
 * One per kind per worker; not thread-safe. Under a sanitizer every block
 * goes to malloc and free, so use-after-free stays detectable. */
#ifndef LEGATE_SPARE_H
#define LEGATE_SPARE_H

#include <stddef.h>

enum { SPARE_MAX = 64 };

struct spare {
    size_t size;              /* bytes per block */
    unsigned n;               /* blocks kept */
    void *block[SPARE_MAX];
};

void spare_init(struct spare *s, size_t size);

/* A block of s->size bytes, uninitialized; NULL when out of memory. */
void *spare_get(struct spare *s);

/* Give back a block of this spare (NULL-safe): kept, or freed when full. */
void spare_put(struct spare *s, void *p);

/* Free every block kept. */
void spare_drain(struct spare *s);

#endif
