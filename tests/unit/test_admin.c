/* Unit tests for the admin listener's request verdicts and /ready. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "admin/admin.h"
#include "upstream/server.h"
#include "one_pool.h"

#include <stdlib.h>
#include <string.h>

static void expect(const char *req, int status, enum admin_page page, bool head)
{
    size_t n = strlen(req);
    for (size_t cut = 0; cut <= n; cut++) {
        struct admin_req r;
        assert_int_equal(admin_parse(req, n, cut, &r), 0);
        assert_int_equal(r.status, status);
        if (status == 200) {
            assert_int_equal(r.page, page);
            assert_int_equal(r.head, head);
        } else {
            assert_non_null(r.why);
        }
    }
}

static void test_routes_and_errors(void **state)
{
    (void)state;
    expect("GET /stats HTTP/1.1\r\nHost: x\r\n\r\n", 200, ADMIN_STATS, false);
    expect("GET /metrics?name=x HTTP/1.1\r\n\r\n", 200, ADMIN_METRICS, false);
    expect("HEAD /healthz HTTP/1.0\r\n\r\n", 200, ADMIN_HEALTHZ, true);
    expect("GET /ready HTTP/1.1\r\n\r\n", 200, ADMIN_READY, false);
    expect("GET /ready/ HTTP/1.1\r\n\r\n", 404, 0, false);
    expect("GET /readyz HTTP/1.1\r\n\r\n", 404, 0, false);
    expect("DELETE /stats HTTP/1.1\r\n\r\n", 405, 0, false);
    expect("GET /stats HTTP/1.1\r\nHost : x\r\n\r\n", 400, 0, false);
    expect("GET /stats HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400, 0, false);
    expect("GET /stats HTTP/2.0\r\n\r\n", 505, 0, false);
    expect("GET /stats\r\n\r\n", 400, 0, false); /* HTTP/0.9: no version */
}

static void test_limits(void **state)
{
    (void)state;
    char *req = malloc(ADMIN_HEAD_MAX + 64);
    assert_non_null(req);
    /* a target of exactly ADMIN_LINE_MAX bytes passes, one more is 414 */
    const char *pre = "GET /ready?", *post = " HTTP/1.1\r\n\r\n";
    size_t fill = ADMIN_LINE_MAX - strlen("/ready?");
    strcpy(req, pre);
    memset(req + strlen(pre), 'a', fill);
    strcpy(req + strlen(pre) + fill, post);
    struct admin_req r;
    assert_int_equal(admin_parse(req, strlen(req), 7, &r), 0);
    assert_int_equal(r.status, 200);
    memmove(req + strlen(pre) + 1, req + strlen(pre), strlen(req + strlen(pre)) + 1);
    assert_int_equal(admin_parse(req, strlen(req), 7, &r), 0);
    assert_int_equal(r.status, 414);
    /* a head of exactly ADMIN_HEAD_MAX bytes passes, one more is 431 */
    const char *line = "GET /ready HTTP/1.1\r\nX: ";
    size_t val = ADMIN_HEAD_MAX - strlen(line) - 4;
    strcpy(req, line);
    memset(req + strlen(line), 'b', val);
    strcpy(req + strlen(line) + val, "\r\n\r\n");
    assert_int_equal(strlen(req), ADMIN_HEAD_MAX);
    assert_int_equal(admin_parse(req, strlen(req), 100, &r), 0);
    assert_int_equal(r.status, 200);
    memmove(req + strlen(line) + 1, req + strlen(line), strlen(req + strlen(line)) + 1);
    assert_int_equal(admin_parse(req, strlen(req), 100, &r), 0);
    assert_int_equal(r.status, 431);
    /* an incomplete head asks for more */
    assert_int_equal(admin_parse("GET /stats HTTP/1.1\r\n", 21, 5, &r), -2);
    free(req);
}

/* /ready: 200 while every pool has a server up; 503 naming the pool once
 * health checks hold its only server out. */
static void test_ready(void **state)
{
    (void)state;
    struct one_pool o;
    one_pool_init(&o, "s1", 0);
    struct server_table tab;
    assert_int_equal(server_table_init(&tab, &o.pool, 1), 0);
    const struct server_table *tabs[1] = { &tab };
    struct admin_view v;
    memset(&v, 0, sizeof(v));
    v.cf = &o.cf;
    v.tabs = tabs;
    struct admin_reply r;
    assert_int_equal(admin_render(&v, ADMIN_READY, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 6);
    assert_memory_equal(r.body, "ready\n", 6);
    free(r.body);
    atomic_store(&tab.down[0], true);
    assert_int_equal(admin_render(&v, ADMIN_READY, &r), 0);
    assert_int_equal(r.status, 503);
    assert_int_equal(r.len, strlen("pool 'alpha': no server up\n"));
    assert_memory_equal(r.body, "pool 'alpha': no server up\n", r.len);
    free(r.body);
    server_table_free(&tab);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_and_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_ready),
    };
    return cmocka_run_group_tests_name("admin", tests, NULL, NULL);
}
