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
        seq[i] = bal_pick(&b, NULL, 0, 0);
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
    for (int kind = CONF_BAL_ROUND_ROBIN; kind <= CONF_BAL_P2C_EWMA; kind++) {
        struct conf_pool cp = bal_pool(s, w, 3, (enum conf_balance)kind);
        struct bal b;
        assert_int_equal(bal_init_servers(&b, cp.balance, cp.servers, cp.nservers, 7), 0);
        const int skip[2] = { 0, 2 };
        for (int i = 0; i < 20; i++) {
            assert_int_equal(bal_pick(&b, skip, 2, 0), 1);
        }
        const int all[3] = { 0, 1, 2 };
        assert_int_equal(bal_pick(&b, all, 3, 0), -1);
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
        int k = bal_pick(&b, NULL, 0, 0);
        bal_opened(&b, k);
        count[k]++;
    }
    assert_int_equal(count[0], 20);
    assert_int_equal(count[1], 10);
    /* close 10 on server 0: it is now the least loaded */
    for (int i = 0; i < 10; i++) {
        bal_closed(&b, 0);
    }
    assert_int_equal(bal_pick(&b, NULL, 0, 0), 0);
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
        count[bal_pick(&b, NULL, 0, 0)]++;
    }
    /* expected 10000 +- ~95 (sd); 6 sd bounds */
    assert_in_range(count[1], 9400, 10600);
    bal_free(&b);
}

static void test_p2c_ewma_prefers_the_fast_and_idle(void **state)
{
    (void)state;
    struct conf_server s[3];
    const unsigned w[3] = { 1, 1, 1 };
    struct conf_pool cp = bal_pool(s, w, 3, CONF_BAL_P2C_EWMA);
    struct bal b;
    assert_int_equal(bal_init_servers(&b, cp.balance, cp.servers, cp.nservers, 99), 0);
    uint64_t now = 1000000;
    bal_observe(&b, 0, 20000, now); /* slow */
    bal_observe(&b, 1, 1000, now);
    bal_observe(&b, 2, 1000, now);
    int count[3] = { 0 };
    for (int i = 0; i < 3000; i++) {
        count[bal_pick(&b, NULL, 0, now)]++;
    }
    /* The slow one wins no duel against a fast one, and the two candidates
     * are always different servers: it is never picked. */
    assert_int_equal(count[0], 0);
    assert_true(count[1] > 1200 && count[2] > 1200);
    /* Outstanding work counts too: a fast server with 40 in flight loses
     * to the slow idle one (20 ms * 1 < 1 ms * 41). */
    b.servers[1].active = 40;
    b.servers[2].active = 40;
    int slow = 0;
    for (int i = 0; i < 300; i++) {
        slow += bal_pick(&b, NULL, 0, now) == 0;
    }
    assert_true(slow > 150); /* every duel it takes part in */
    /* A lower sample decays in; a higher one replaces the average at once. */
    bal_observe(&b, 0, 1000, now + BAL_EWMA_TAU_US);
    assert_true(b.servers[0].ewma_us < 20000 * 0.4 + 1000);
    bal_observe(&b, 0, 50000, now + BAL_EWMA_TAU_US + 1);
    assert_true(b.servers[0].ewma_us == 50000.0);
    /* Down servers and skips are honoured. */
    bal_set_down(&b, 1, true);
    int skip[1] = { 2 };
    for (int i = 0; i < 50; i++) {
        assert_int_equal(bal_pick(&b, skip, 1, now), 0);
    }
    bal_free(&b);
}

/* A server that lost every duel after one slow answer decays back into
 * the choice: its average falls while no sample comes, and once it looks
 * cheaper than the other's fresh one it is tried again. */
static void test_p2c_ewma_tries_a_starved_server_again(void **state)
{
    (void)state;
    struct conf_server s[2];
    const unsigned w[2] = { 1, 1 };
    struct conf_pool cp = bal_pool(s, w, 2, CONF_BAL_P2C_EWMA);
    struct bal b;
    assert_int_equal(bal_init_servers(&b, cp.balance, cp.servers, cp.nservers, 7), 0);
    uint64_t t0 = 1000000;
    bal_observe(&b, 0, 50000, t0); /* one slow answer: 50 ms */
    bal_observe(&b, 1, 1000, t0);
    /* 10 s on, the other answering in 1 ms all along: 50 ms * e^-1 > 1 ms */
    bal_observe(&b, 1, 1000, t0 + BAL_EWMA_TAU_US);
    assert_int_equal(bal_pick(&b, NULL, 0, t0 + BAL_EWMA_TAU_US), 1);
    /* 40 s on: 50 ms * e^-4 = 0.92 ms < 1 ms, so the starved one wins */
    bal_observe(&b, 1, 1000, t0 + 4 * BAL_EWMA_TAU_US);
    assert_int_equal(bal_pick(&b, NULL, 0, t0 + 4 * BAL_EWMA_TAU_US), 0);
    bal_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin_weights_and_smoothness),
        cmocka_unit_test(test_skip_list_is_honoured),
        cmocka_unit_test(test_least_connections_weighted),
        cmocka_unit_test(test_random_follows_weights),
        cmocka_unit_test(test_p2c_ewma_prefers_the_fast_and_idle),
        cmocka_unit_test(test_p2c_ewma_tries_a_starved_server_again),
    };
    return cmocka_run_group_tests_name("bal", tests, NULL, NULL);
}
