/* Unit tests for log's rate limit: the first line passes, lines within a
 * second are held and counted, the next line after it says how many. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/log.h"

static void test_limit_holds_and_counts(void **state)
{
    (void)state;
    struct log_limit l = { 0 };
    uint64_t held = 99;
    assert_true(log_limit_pass(&l, 5000, &held));
    assert_int_equal(held, 0);
    for (uint64_t t = 5000; t < 5000 + LOG_LIMIT_MS; t += 10) {
        assert_false(log_limit_pass(&l, t, &held));
    }
    assert_true(log_limit_pass(&l, 5000 + LOG_LIMIT_MS, &held));
    assert_int_equal(held, LOG_LIMIT_MS / 10);
    /* quiet for a while: the next line passes at once, nothing held */
    assert_true(log_limit_pass(&l, 60000, &held));
    assert_int_equal(held, 0);
}

static void test_limit_from_time_zero(void **state)
{
    (void)state;
    struct log_limit l = { 0 };
    uint64_t held;
    assert_true(log_limit_pass(&l, 0, &held)); /* a zero clock still arms it */
    assert_false(log_limit_pass(&l, 1, &held));
    assert_true(log_limit_pass(&l, LOG_LIMIT_MS, &held));
    assert_int_equal(held, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_holds_and_counts),
        cmocka_unit_test(test_limit_from_time_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
