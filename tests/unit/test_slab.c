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
    slab_init(&s, sizeof(struct obj), NULL);
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

/* Blocks come and go with their objects: empty blocks are kept for reuse
 * (the owner hears of each) until a trim unmaps them but one, which the
 * next allocation reuses. (Under a sanitizer objects are the heap's: only
 * the object accounting and contents are checked.) */
static void test_empty_blocks_are_kept_until_trimmed(void **state)
{
    (void)state;
    const bool packed = SLAB_PACKED;
    size_t changes = 0;
    struct slab_set set = { .changed = count_changes, .changed_arg = &changes };
    struct slab s;
    slab_init(&s, sizeof(struct obj), &set);
    enum { N = 5000 };
    static struct obj *held[N];
    for (size_t i = 0; i < N; i++) {
        held[i] = slab_alloc(&s);
        assert_non_null(held[i]);
        held[i]->a = i;
    }
    size_t full = packed ? (N + s.per_block - 1) / s.per_block : 0;
    assert_true(!packed || full >= 3);
    assert_int_equal(s.nblocks, full);
    assert_int_equal(changes, full); /* the owner heard of each block */
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(held[i]->a, i); /* nothing overlapped */
    }
    for (size_t i = 0; i < N; i += 2) { /* every other: no block empties */
        slab_free(&s, held[i]);
    }
    assert_int_equal(s.nblocks, full);
    assert_int_equal(changes, full);
    for (size_t i = 0; i < N; i += 2) { /* refilled from the holes */
        held[i] = slab_alloc(&s);
    }
    assert_int_equal(s.nblocks, full);
    for (size_t i = 0; i < N; i++) {
        slab_free(&s, held[i]);
    }
    assert_int_equal(s.nobjects, 0);
    assert_int_equal(s.nblocks, full); /* all kept */
    assert_int_equal(s.nempty, full);
    assert_int_equal(changes, 2 * full); /* and the owner heard each empty */

    /* Refilling takes the kept blocks: nothing is mapped. */
    for (size_t i = 0; i < N; i++) {
        held[i] = slab_alloc(&s);
        assert_int_equal(held[i]->a, 0);
    }
    assert_int_equal(s.nblocks, full);
    assert_int_equal(s.nempty, 0);
    assert_int_equal(changes, 2 * full);
    for (size_t i = 0; i < N; i++) {
        slab_free(&s, held[i]);
    }

    slab_set_trim(&set);
    assert_int_equal(s.nblocks, packed ? 1 : 0); /* one kept */
    assert_int_equal(s.nempty, packed ? 1 : 0);
    struct obj *again = slab_alloc(&s);
    assert_int_equal(s.nblocks, packed ? 1 : 0);
    assert_int_equal(changes, 3 * full); /* reused, not mapped */
    slab_free(&s, again);
    slab_fini(&s);
    assert_int_equal(s.nblocks, 0);
    assert_null(set.head);
}

/* A set trims each of its slabs; a slab leaving it (fini) is unlinked
 * wherever it sits in the list. */
static void test_set_trims_every_member(void **state)
{
    (void)state;
    const bool packed = SLAB_PACKED;
    struct slab_set set = { 0 };
    struct slab a, b, c;
    slab_init(&a, 64, &set);
    slab_init(&b, 200, &set);
    slab_init(&c, 1000, &set);
    struct slab *all[] = { &a, &b, &c };
    enum { PER = 400 };
    static void *held[PER];
    for (size_t k = 0; k < 3; k++) {
        for (size_t i = 0; i < PER; i++) {
            held[i] = slab_alloc(all[k]);
            assert_non_null(held[i]);
        }
        for (size_t i = 0; i < PER; i++) {
            slab_free(all[k], held[i]);
        }
    }
    assert_int_equal(c.nblocks, packed ? (PER + c.per_block - 1) / c.per_block : 0);
    assert_true(!packed || c.nblocks > 1);
    slab_fini(&b); /* the middle one leaves */
    assert_ptr_equal(set.head, &c);
    assert_ptr_equal(c.set_next, &a);
    slab_set_trim(&set);
    assert_int_equal(a.nblocks, packed ? 1 : 0);
    assert_int_equal(c.nblocks, packed ? 1 : 0);
    slab_fini(&c);
    assert_ptr_equal(set.head, &a);
    assert_null(a.set_next); /* alone in the set */
    slab_fini(&a);
    assert_null(set.head);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_objects_are_zeroed_distinct_and_aligned),
        cmocka_unit_test(test_empty_blocks_are_kept_until_trimmed),
        cmocka_unit_test(test_set_trims_every_member),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
