/* Unit tests for bal: weighted round robin, least connections, random. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "upstream/bal.h"

#include <string.h>

static struct conf_pool bal_pool(struct conf_server *servers, const unsigned *weights,
                                 size_t n, enum conf_balance kind)
{
    struct conf_pool cp;
    memset(&cp, 0, sizeof(cp));
    for (size_t i = 0; i < n; i++) {
        memset(&servers[i], 0, sizeof(servers[i]));
        servers[i].weight = weights[i];
    }
    cp.servers = servers;
    cp.nservers = n;
    cp.balance = kind;
    return cp;
}

static void test_round_robin_weights_and_smoothness(void **state)
{
    (void)state;
    struct conf_server s[3];
    const unsigned w[3] = { 5, 1, 1 };
    struct conf_pool cp = bal_pool(s, w, 3, CONF_BAL_ROUND_ROBIN);
    struct bal b;
    assert_int_equal(bal_init_servers(&b, cp.balance, cp.servers, cp.nservers, 1), 0);
    int count[3] = { 0 };
    int seq[7];
    for (int i = 0; i < 7; i++) {
        seq[i] = bal_pick(&b, NULL, 0);
        count[seq[i]]++;
    }
    assert_int_equal(count[0], 5);
    assert_int_equal(count[1], 1);
    assert_int_equal(count[2], 1);
    /* smooth: the heavy server is never picked 5 times in a row */
    int run = 0, maxrun = 0;
    for (int i = 0; i < 7; i++) {
        run = seq[i] == 0 ? run + 1 : 0;
        maxrun = run > maxrun ? run : maxrun;
    }
    assert_true(maxrun < 5);
    bal_free(&b);
}

static void test_skip_list_is_honoured(void **state)
{
    (void)state;
    struct conf_server s[3];
    const unsigned w[3] = { 1, 1, 1 };
    for (int kind = CONF_BAL_ROUND_ROBIN; kind <= CONF_BAL_RANDOM; kind++) {
        struct conf_pool cp = bal_pool(s, w, 3, (enum conf_balance)kind);
        struct bal b;
        assert_int_equal(bal_init_servers(&b, cp.balance, cp.servers, cp.nservers, 7), 0);
        const int skip[2] = { 0, 2 };
        for (int i = 0; i < 20; i++) {
            assert_int_equal(bal_pick(&b, skip, 2), 1);
        }
        const int all[3] = { 0, 1, 2 };
        assert_int_equal(bal_pick(&b, all, 3), -1);
        bal_free(&b);
    }
}

static void test_least_connections_weighted(void **state)
{
    (void)state;
    struct conf_server s[2];
    const unsigned w[2] = { 2, 1 };
    struct conf_pool cp = bal_pool(s, w, 2, CONF_BAL_LEAST_CONN);
    struct bal b;
    assert_int_equal(bal_init_servers(&b, cp.balance, cp.servers, cp.nservers, 1), 0);
    /* open 30 connections without closing: the weight-2 server takes 2/3 */
    int count[2] = { 0 };
    for (int i = 0; i < 30; i++) {
        int k = bal_pick(&b, NULL, 0);
        bal_opened(&b, k);
        count[k]++;
    }
    assert_int_equal(count[0], 20);
    assert_int_equal(count[1], 10);
    /* close 10 on server 0: it is now the least loaded */
    for (int i = 0; i < 10; i++) {
        bal_closed(&b, 0);
    }
    assert_int_equal(bal_pick(&b, NULL, 0), 0);
    bal_free(&b);
}

static void test_random_follows_weights(void **state)
{
    (void)state;
    struct conf_server s[2];
    const unsigned w[2] = { 9, 1 };
    struct conf_pool cp = bal_pool(s, w, 2, CONF_BAL_RANDOM);
    struct bal b;
    assert_int_equal(bal_init_servers(&b, cp.balance, cp.servers, cp.nservers, 12345), 0);
    int count[2] = { 0 };
    for (int i = 0; i < 100000; i++) {
        count[bal_pick(&b, NULL, 0)]++;
    }
    /* expected 10000 +- ~95 (sd); 6 sd bounds */
    assert_in_range(count[1], 9400, 10600);
    bal_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin_weights_and_smoothness),
        cmocka_unit_test(test_skip_list_is_honoured),
        cmocka_unit_test(test_least_connections_weighted),
        cmocka_unit_test(test_random_follows_weights),
    };
    return cmocka_run_group_tests_name("bal", tests, NULL, NULL);
}
