/* slab: fixed-size objects packed in blocks of their own (see slab.h). */
#include "slab.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { SLAB_ALIGN = 16 };

/* A block: this header, then `per_block` slots. A slot holds the block's
 * address, then the object (or, while free, the next free slot). */
struct slab_block {
    struct slab_block *prev, *next; /* on the partial list */
    void *free;                     /* freed slots (their objects) */
    size_t used;                    /* slots holding an object */
    size_t fresh;                   /* slots never used, from the end */
    int listed;                     /* on the partial list */
};

static size_t slab_round(size_t n)
{
    return (n + SLAB_ALIGN - 1) / SLAB_ALIGN * SLAB_ALIGN;
}

static size_t slab_header(void)
{
    return slab_round(sizeof(struct slab_block));
}

static size_t slab_prefix(void)
{
    return slab_round(sizeof(struct slab_block *));
}

void slab_init(struct slab *s, size_t size, struct slab_set *set)
{
    memset(s, 0, sizeof(*s));
    s->size = size;
    s->slot = slab_prefix() + slab_round(size > sizeof(void *) ? size : sizeof(void *));
    s->per_block = (SLAB_BLOCK_SIZE - slab_header()) / s->slot;
    s->set = set;
    if (set != NULL) {
        s->set_next = set->head;
        set->head = s;
    }
}

static void slab_changed(const struct slab *s)
{
    if (s->set != NULL && s->set->changed != NULL) {
        s->set->changed(s->set->changed_arg);
    }
}

static void slab_list(struct slab *s, struct slab_block *b)
{
    b->prev = NULL;
    b->next = s->partial;
    if (s->partial != NULL) {
        s->partial->prev = b;
    }
    s->partial = b;
    b->listed = 1;
}

static void slab_unlist(struct slab *s, struct slab_block *b)
{
    if (b->prev != NULL) {
        b->prev->next = b->next;
    } else {
        s->partial = b->next;
    }
    if (b->next != NULL) {
        b->next->prev = b->prev;
    }
    b->prev = b->next = NULL;
    b->listed = 0;
}

static struct slab_block *slab_block_new(struct slab *s)
{
    struct slab_block *b = s->empty;
    if (b != NULL) {
        s->empty = b->next;
        s->nempty--;
    } else {
        void *m = mmap(NULL, SLAB_BLOCK_SIZE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            return NULL;
        }
        b = m;
        s->nblocks++;
        slab_changed(s);
    }
    b->free = NULL;
    b->used = 0;
    b->fresh = s->per_block;
    slab_list(s, b);
    return b;
}

void *slab_alloc(struct slab *s)
{
    if (!SLAB_PACKED) {
        void *p = calloc(1, s->size);
        s->nobjects += p != NULL;
        return p;
    }
    struct slab_block *b = s->partial;
    if (b == NULL && (b = slab_block_new(s)) == NULL) {
        return NULL;
    }
    char *obj;
    if (b->free != NULL) {
        obj = b->free;
        memcpy(&b->free, obj, sizeof(void *));
    } else {
        char *slot = (char *)b + slab_header() + (s->per_block - b->fresh) * s->slot;
        b->fresh--;
        memcpy(slot, &b, sizeof(b));
        obj = slot + slab_prefix();
    }
    b->used++;
    if (b->free == NULL && b->fresh == 0) {
        slab_unlist(s, b); /* full */
    }
    s->nobjects++;
    memset(obj, 0, s->size);
    return obj;
}

void slab_free(struct slab *s, void *p)
{
    if (p == NULL) {
        return;
    }
    s->nobjects--;
    if (!SLAB_PACKED) {
        free(p);
        return;
    }
    char *obj = p;
    struct slab_block *b;
    memcpy(&b, obj - slab_prefix(), sizeof(b));
    memcpy(obj, &b->free, sizeof(void *));
    b->free = obj;
    b->used--;
    if (!b->listed) {
        slab_list(s, b);
    }
    if (b->used == 0) { /* kept for reuse; a trim unmaps it */
        slab_unlist(s, b);
        b->next = s->empty;
        s->empty = b;
        s->nempty++;
        slab_changed(s);
    }
}

/* Unmap empty blocks until `keep` are left. */
static void slab_unmap_empty(struct slab *s, size_t keep)
{
    while (s->nempty > keep) {
        struct slab_block *b = s->empty;
        s->empty = b->next;
        s->nempty--;
        munmap(b, SLAB_BLOCK_SIZE);
        s->nblocks--;
    }
}

void slab_set_trim(struct slab_set *set)
{
    for (struct slab *s = set->head; s != NULL; s = s->set_next) {
        slab_unmap_empty(s, 1);
    }
}

void slab_fini(struct slab *s)
{
    slab_unmap_empty(s, 0);
    /* Leaving is rare (a pool's end) and a set holds a few slabs: walk it. */
    for (struct slab **at = s->set ? &s->set->head : NULL; at != NULL && *at != NULL;
         at = &(*at)->set_next) {
        if (*at == s) {
            *at = s->set_next;
            break;
        }
    }
    s->set = NULL;
    s->set_next = NULL;
}
