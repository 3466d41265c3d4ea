/* Unit tests for spare: a worker's cache of freed blocks of one size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/san.h"
#include "core/spare.h"

#include <string.h>

/* A block given back is the next one handed out (the most recently used
 * is the one still in cache); without spares a block comes from the heap. */
static void test_blocks_are_reused_last_in_first_out(void **state)
{
    (void)state;
    struct spare s;
    spare_init(&s, 200);
    char *a = spare_get(&s), *b = spare_get(&s);
    assert_non_null(a);
    assert_non_null(b);
    memset(a, 1, 200); /* each block has all its bytes */
    memset(b, 2, 200);
    spare_put(&s, a);
    spare_put(&s, b);
    spare_put(&s, NULL); /* NULL-safe, nothing kept */
    if (LEGATE_ASAN) { /* every block went back to the heap */
        assert_int_equal(s.n, 0);
        return;
    }
    assert_int_equal(s.n, 2);
    assert_ptr_equal(spare_get(&s), b);
    assert_ptr_equal(spare_get(&s), a);
    assert_int_equal(s.n, 0);
    spare_put(&s, a);
    spare_put(&s, b);
    spare_drain(&s);
    assert_int_equal(s.n, 0);
}

/* At most SPARE_MAX blocks are kept; the rest are freed (ASan's leak check
 * sees every one of them back). */
static void test_at_most_spare_max_blocks_are_kept(void **state)
{
    (void)state;
    struct spare s;
    spare_init(&s, 64);
    void *blocks[SPARE_MAX + 10];
    for (size_t i = 0; i < SPARE_MAX + 10; i++) {
        blocks[i] = spare_get(&s);
        assert_non_null(blocks[i]);
    }
    for (size_t i = 0; i < SPARE_MAX + 10; i++) {
        spare_put(&s, blocks[i]);
    }
    assert_int_equal(s.n, LEGATE_ASAN ? 0 : SPARE_MAX);
    spare_drain(&s);
    assert_int_equal(s.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks_are_reused_last_in_first_out),
        cmocka_unit_test(test_at_most_spare_max_blocks_are_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
