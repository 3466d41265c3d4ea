/* slab: fixed-size objects of one kind packed in blocks of their own.
 *
 * Long-lived objects (client and server connections) allocated from the
 * general heap in the middle of a burst end up scattered between the burst's
 * short-lived buffers; once those are freed, every page that still holds one
 * connection stays resident and the heap cannot give it back. A slab keeps
 * them dense: blocks are mapped from the kernel and filled slot by slot;
 * pages of a block are touched only as its slots are first used.
 *
 * A block that empties is kept for reuse until its owner trims the slabs
 * (slab_set_trim, once the worker's heap has settled), which unmaps every
 * empty block but one. Unmapping at once made request objects, which fill
 * and empty blocks all the time under load, cost an mmap, a munmap (a TLB
 * shootdown across the worker threads) and page faults per block.
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
struct slab;

/* The slabs of one owner (a worker), trimmed together. */
struct slab_set {
    struct slab *head;
    /* Optional: a block was mapped or emptied; the owner calls
     * slab_set_trim once these stop. `changed_arg` is passed. */
    void (*changed)(void *arg);
    void *changed_arg;
};

struct slab {
    size_t size;                /* bytes per object */
    size_t slot;                /* bytes per slot: block pointer + object, aligned */
    size_t per_block;           /* slots per block */
    struct slab_block *partial; /* blocks with a free or never-used slot, none empty */
    struct slab_block *empty;   /* empty blocks kept for reuse until a trim */
    size_t nobjects;            /* objects allocated and not yet freed */
    size_t nblocks;             /* blocks mapped, the empty ones included */
    size_t nempty;              /* of which empty */
    struct slab_set *set;       /* NULL: no owner; empty blocks stay until slab_fini */
    struct slab *set_next;
};

/* Set up a slab of objects of `size` bytes (at most a quarter block),
 * joining `set` when it is not NULL. */
void slab_init(struct slab *s, size_t size, struct slab_set *set);

/* A zeroed object, or NULL when out of memory. */
void *slab_alloc(struct slab *s);

/* Give back an object of this slab (NULL-safe). */
void slab_free(struct slab *s, void *p);

/* Unmap the empty blocks of every slab of the set but one each. */
void slab_set_trim(struct slab_set *set);

/* Unmap every empty block and leave the set. Every object must have been
 * freed. */
void slab_fini(struct slab *s);

#endif
