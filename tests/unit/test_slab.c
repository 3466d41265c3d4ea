/* Unit tests for slab: packed fixed-size objects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/slab.h"

#include <stdbool.h>
#include <string.h>

struct obj {
    uint64_t a;
    char pad[100];
};

static void test_objects_are_zeroed_distinct_and_aligned(void **state)
{
    (void)state;
    struct slab s;
    slab_init(&s, sizeof(struct obj));
    struct obj *x = slab_alloc(&s), *y = slab_alloc(&s);
    assert_non_null(x);
    assert_non_null(y);
    assert_ptr_not_equal(x, y);
    assert_int_equal((uintptr_t)x % 16, 0);
    assert_int_equal(x->a, 0);
    memset(x, 0xAB, sizeof(*x)); /* writing a whole object spares its neighbour */
    assert_int_equal(y->a, 0);
    slab_free(&s, x);
    struct obj *z = slab_alloc(&s); /* zeroed again (packed: the same slot) */
    if (SLAB_PACKED) {
        assert_ptr_equal(z, x);
    }
    assert_int_equal(z->a, 0);
    assert_int_equal(s.nobjects, 2);
    slab_free(&s, y);
    slab_free(&s, z);
    slab_free(&s, NULL);
    assert_int_equal(s.nobjects, 0);
    slab_fini(&s);
}

static void count_changes(void *arg)
{
    (*(size_t *)arg)++;
}

/* Blocks come and go with their objects: empty blocks are unmapped but
 * one, which the next allocation reuses. (Under a sanitizer objects are
 * the heap's: only the object accounting and contents are checked.) */
static void test_empty_blocks_are_returned(void **state)
{
    (void)state;
    const bool packed = SLAB_PACKED;
    struct slab s;
    slab_init(&s, sizeof(struct obj));
    size_t grew = 0;
    s.changed = count_changes;
    s.changed_arg = &grew;
    enum { N = 5000 };
    static struct obj *held[N];
    for (size_t i = 0; i < N; i++) {
        held[i] = slab_alloc(&s);
        assert_non_null(held[i]);
        held[i]->a = i;
    }
    size_t full = packed ? (N + s.per_block - 1) / s.per_block : 0;
    assert_int_equal(s.nblocks, full);
    assert_int_equal(grew, full); /* the owner heard of each block */
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(held[i]->a, i); /* nothing overlapped */
    }
    for (size_t i = 0; i < N; i += 2) { /* every other: no block empties */
        slab_free(&s, held[i]);
    }
    assert_int_equal(s.nblocks, full);
    for (size_t i = 0; i < N; i += 2) { /* refilled from the holes */
        held[i] = slab_alloc(&s);
    }
    assert_int_equal(s.nblocks, full);
    for (size_t i = 0; i < N; i++) {
        slab_free(&s, held[i]);
    }
    assert_int_equal(s.nobjects, 0);
    assert_int_equal(s.nblocks, packed ? 1 : 0); /* the spare */
    struct obj *again = slab_alloc(&s);
    assert_int_equal(s.nblocks, packed ? 1 : 0);
    assert_int_equal(grew, full); /* the spare is reused, not mapped */
    slab_free(&s, again);
    slab_fini(&s);
    assert_int_equal(s.nblocks, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_objects_are_zeroed_distinct_and_aligned),
        cmocka_unit_test(test_empty_blocks_are_returned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
