/* Unit tests for stats: latency buckets and the JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "admin/stats.h"
#include "upstream/server.h"
#include "one_pool.h"

#include <stdlib.h>
#include <string.h>

static void test_latency_buckets(void **state)
{
    (void)state;
    uint64_t prev = 0;
    for (unsigned b = 1; b < STATS_LAT_BUCKETS; b++) {
        uint64_t bound = stats_lat_bound(b);
        assert_true(bound > prev); /* strictly increasing */
        prev = bound;
    }
    static const uint64_t samples[] = { 0, 1, 15, 16, 17, 100, 999, 1000, 123456, 1ull << 39 };
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        unsigned b = stats_lat_bucket(samples[i]);
        assert_true(b < STATS_LAT_BUCKETS);
        assert_true(samples[i] <= stats_lat_bound(b));
        if (b > 0) {
            assert_true(samples[i] > stats_lat_bound(b - 1));
        }
        /* buckets are at most 12.5% wide above 16 us */
        if (samples[i] >= 16) {
            assert_true(stats_lat_bound(b) - samples[i] <= samples[i] / 8 + 1);
        }
    }
}

static void test_json_sums_workers(void **state)
{
    (void)state;
    struct one_pool o;
    one_pool_init(&o, "s1", 0);
    struct stats a, b;
    assert_int_equal(stats_init(&a, &o.cf), 0);
    assert_int_equal(stats_init(&b, &o.cf), 0);
    stats_add(stats_server(&a.pools[0], 0, SS_REQUESTS), 3);
    stats_add(stats_server(&b.pools[0], 0, SS_REQUESTS), 4);
    for (int i = 0; i < 100; i++) {
        stats_latency(&a.pools[0], 0, (uint64_t)(i < 90 ? 100 : 5000));
    }
    struct stats *ws[2] = { &a, &b };
    struct server_table tab;
    assert_int_equal(server_table_init(&tab, &o.pool, 2), 0);
    const struct server_table *tabs[1] = { &tab };
    char *json = NULL;
    long n = stats_json(&json, &o.cf, tabs, ws, 2, 0, "host\"x");
    assert_true(n > 0);
    assert_non_null(strstr(json, "\"requests\":7"));
    assert_non_null(strstr(json, "\"source\":\"host\\\"x\""));
    assert_non_null(strstr(json, "\"latency_p50_us\":103"));  /* bucket bound of 100 us */
    assert_non_null(strstr(json, "\"latency_p99_us\":5119"));
    assert_non_null(strstr(json, "\"s1\": {"));
    free(json);
    server_table_free(&tab);
    stats_free(&a);
    stats_free(&b);
}

/* Prometheus' text: sums over workers, labels escaped, the histogram's
 * cumulative power-of-two buckets exact at their edges, _sum and _count. */
static void test_prometheus(void **state)
{
    (void)state;
    struct one_pool o;
    one_pool_init(&o, "s\"1", CONF_PROTO_REDIS);
    struct stats a, b;
    assert_int_equal(stats_init(&a, &o.cf), 0);
    assert_int_equal(stats_init(&b, &o.cf), 0);
    stats_add(stats_server(&a.pools[0], 0, SS_REQUESTS), 3);
    stats_add(stats_server(&b.pools[0], 0, SS_REQUESTS), 4);
    stats_add(&a.pools[0].f[SP_CLIENT_CONNECTIONS], 2);
    for (int i = 0; i < 90; i++) {
        stats_latency(&a.pools[0], 0, 100);
    }
    for (int i = 0; i < 9; i++) {
        stats_latency(&b.pools[0], 0, 5000);
    }
    stats_latency(&b.pools[0], 0, 127); /* the last value under the 128 us edge */
    struct stats *ws[2] = { &a, &b };
    struct server_table tab;
    assert_int_equal(server_table_init(&tab, &o.pool, 2), 0);
    const struct server_table *tabs[1] = { &tab };
    char *text = NULL;
    long n = stats_prometheus(&text, &o.cf, tabs, ws, 2, 0);
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(text));
    static const char *const want[] = {
        "# TYPE legate_server_requests_total counter\n",
        "legate_server_requests_total{pool=\"alpha\",server=\"s\\\"1\"} 7\n",
        "# TYPE legate_pool_client_connections gauge\n",
        "legate_pool_client_connections{pool=\"alpha\"} 2\n",
        "# TYPE legate_server_latency_seconds histogram\n",
        "legate_server_latency_seconds_bucket{pool=\"alpha\",server=\"s\\\"1\",le=\"0.000064\"} 0\n",
        "legate_server_latency_seconds_bucket{pool=\"alpha\",server=\"s\\\"1\",le=\"0.000128\"} 91\n",
        "legate_server_latency_seconds_bucket{pool=\"alpha\",server=\"s\\\"1\",le=\"0.004096\"} 91\n",
        "legate_server_latency_seconds_bucket{pool=\"alpha\",server=\"s\\\"1\",le=\"0.008192\"} 100\n",
        "legate_server_latency_seconds_bucket{pool=\"alpha\",server=\"s\\\"1\",le=\"+Inf\"} 100\n",
        "legate_server_latency_seconds_sum{pool=\"alpha\",server=\"s\\\"1\"} 0.054127\n",
        "legate_server_latency_seconds_count{pool=\"alpha\",server=\"s\\\"1\"} 100\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (strstr(text, want[i]) == NULL) {
            fail_msg("missing: %s\n--- got ---\n%s", want[i], text);
        }
    }
    /* a redis pool has no arms, no retries and no health checks */
    assert_null(strstr(text, "legate_arm_"));
    assert_null(strstr(text, "legate_pool_retries_total"));
    assert_null(strstr(text, "legate_server_up"));
    free(text);
    server_table_free(&tab);
    stats_free(&a);
    stats_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_latency_buckets),
        cmocka_unit_test(test_json_sums_workers),
        cmocka_unit_test(test_prometheus),
    };
    return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
