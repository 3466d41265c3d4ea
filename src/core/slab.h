/* slab: fixed-size objects of one kind packed in blocks of their own.
 *
 * Long-lived objects (client and server connections) allocated from the
 * general heap in the middle of a burst end up scattered between the burst's
 * short-lived buffers; once those are freed, every page that still holds one
 * connection stays resident and the heap cannot give it back. A slab keeps
 * them dense: blocks are mapped from the kernel, filled slot by slot, and
 * unmapped as soon as they are empty (one empty block is kept as a spare).
 * Pages of a block are touched only as its slots are first used.
 *
 * One slab per kind per worker; not thread-safe. Under a sanitizer the slab
 * passes each object to calloc/free so use-after-free stays detectable. */
#ifndef LEGATE_SLAB_H
#define LEGATE_SLAB_H

#include "san.h"

#include <stddef.h>

enum { SLAB_BLOCK_SIZE = 64 * 1024 };

/* SLAB_PACKED: 1 when objects live in blocks, 0 under a sanitizer. */
#define SLAB_PACKED (!LEGATE_ASAN)

struct slab_block;

struct slab {
    size_t size;                /* bytes per object */
    size_t slot;                /* bytes per slot: block pointer + object, aligned */
    size_t per_block;           /* slots per block */
    struct slab_block *partial; /* blocks with a free or never-used slot */
    struct slab_block *spare;   /* one empty block kept for reuse */
    size_t nobjects;            /* objects allocated and not yet freed */
    size_t nblocks;             /* blocks mapped, the spare included */
    void (*changed)(void *arg); /* optional: a block was mapped (the owner may trim later) */
    void *changed_arg;
};

/* Set up a slab of objects of `size` bytes (at most a quarter block). */
void slab_init(struct slab *s, size_t size);

/* A zeroed object, or NULL when out of memory. */
void *slab_alloc(struct slab *s);

/* Give back an object of this slab (NULL-safe). */
void slab_free(struct slab *s, void *p);

/* Unmap the spare block. Every object must have been freed. */
void slab_fini(struct slab *s);

#endif
