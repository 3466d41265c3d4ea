/* Unit tests for redis_cmd: the table is sorted (binary search depends on
 * it), well-formed, and classifies the commands the proxy promises. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proto/redis_cmd.h"
#include "proto/resp.h"

#include <string.h>

static void test_table_sorted_and_well_formed(void **state)
{
    (void)state;
    size_t n;
    const struct redis_cmd *t = redis_cmd_table(&n);
    assert_true(n > 150);
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            assert_true(strcmp(t[i - 1].name, t[i].name) < 0);
        }
        for (const char *p = t[i].name; *p; p++) {
            assert_true((*p >= 'A' && *p <= 'Z') || *p == '_');
        }
        assert_true(strlen(t[i].name) <= RESP_NAME_MAX); /* resp_command_prefix */
        assert_int_not_equal(t[i].arity, 0);
        if (t[i].kind == REDIS_KEYED) {
            /* a fixed run of keys, keys counted by an argument, or both */
            assert_true((t[i].first >= 1 && t[i].step >= 1) || t[i].numkeys >= 1);
            assert_true(t[i].numkeys == 0 || t[i].numkeys > t[i].first);
        }
        assert_ptr_equal(redis_cmd_find(t[i].name), &t[i]);
    }
}

static void test_classification(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        enum redis_kind kind;
    } want[] = {
        { "GET", REDIS_KEYED }, { "SET", REDIS_KEYED }, { "MGET", REDIS_SPLIT_VALUES },
        { "MSET", REDIS_SPLIT_PAIRS }, { "DEL", REDIS_SPLIT_SUM }, { "UNLINK", REDIS_SPLIT_SUM },
        { "EXISTS", REDIS_SPLIT_SUM }, { "TOUCH", REDIS_SPLIT_SUM }, { "SINTER", REDIS_KEYED },
        { "RENAME", REDIS_KEYED }, { "MSETNX", REDIS_KEYED }, { "EVAL", REDIS_KEYED },
        { "PING", REDIS_LOCAL }, { "QUIT", REDIS_LOCAL }, { "BLPOP", REDIS_UNSUPPORTED },
        { "SUBSCRIBE", REDIS_UNSUPPORTED }, { "MULTI", REDIS_UNSUPPORTED },
        { "KEYS", REDIS_UNSUPPORTED }, { "SCAN", REDIS_UNSUPPORTED }, { "INFO", REDIS_ANY },
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct redis_cmd *c = redis_cmd_find(want[i].name);
        assert_non_null(c);
        assert_int_equal(c->kind, want[i].kind);
    }
    /* keys counted by an argument: EVAL's after the script, ZUNIONSTORE's
     * after the destination */
    assert_int_equal(redis_cmd_find("EVAL")->numkeys, 2);
    assert_int_equal(redis_cmd_find("EVAL")->first, 0);
    assert_int_equal(redis_cmd_find("ZUNIONSTORE")->numkeys, 2);
    assert_int_equal(redis_cmd_find("ZUNIONSTORE")->first, 1);
    assert_int_equal(redis_cmd_find("LMPOP")->numkeys, 1);
    assert_int_equal(redis_cmd_find("SORT")->options, 2);
    assert_int_equal(redis_cmd_find("GEORADIUS")->options, 6);
    assert_null(redis_cmd_find("NOSUCH"));
    assert_null(redis_cmd_find("get")); /* names are upper-cased by the parser */
    const struct redis_cmd *get = redis_cmd_find("GET");
    assert_true(redis_cmd_arity_ok(get, 2));
    assert_false(redis_cmd_arity_ok(get, 3));
    assert_true(redis_cmd_arity_ok(redis_cmd_find("DEL"), 5));
    assert_false(redis_cmd_arity_ok(redis_cmd_find("DEL"), 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_sorted_and_well_formed),
        cmocka_unit_test(test_classification),
    };
    return cmocka_run_group_tests_name("redis_cmd", tests, NULL, NULL);
}
