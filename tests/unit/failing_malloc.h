/* For a unit test linked with -Wl,--wrap=malloc (see the Makefile): the
 * library's malloc comes here. `mallocs_left` >= 0 lets that many through,
 * then fails every one; -1 (the start) lets all through. Test-only state;
 * include from one file of a test binary. */
#ifndef LEGATE_TEST_FAILING_MALLOC_H
#define LEGATE_TEST_FAILING_MALLOC_H

#include <stddef.h>

static int mallocs_left = -1;
void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);

void *__wrap_malloc(size_t n)
{
    if (mallocs_left == 0) {
        return NULL;
    }
    if (mallocs_left > 0) {
        mallocs_left--;
    }
    return __real_malloc(n);
}

#endif
