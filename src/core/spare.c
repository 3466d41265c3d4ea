/* spare: a worker's cache of freed blocks of one size (see spare.h). */
#include "spare.h"

#include "san.h"

#include <stdlib.h>

void spare_init(struct spare *s, size_t size)
{
    s->size = size;
    s->n = 0;
}

void *spare_get(struct spare *s)
{
    return s->n > 0 ? s->block[--s->n] : malloc(s->size);
}

void spare_put(struct spare *s, void *p)
{
    if (p == NULL) {
        return;
    }
    if (LEGATE_ASAN || s->n == SPARE_MAX) {
        free(p);
        return;
    }
    s->block[s->n++] = p;
}

void spare_drain(struct spare *s)
{
    while (s->n > 0) {
        free(s->block[--s->n]);
    }
}
