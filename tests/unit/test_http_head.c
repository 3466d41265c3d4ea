/* Unit tests for http_head: heads fed whole, byte by byte and in odd
 * pieces reach the same verdict; each RFC 9112 refusal legate adds to
 * llhttp's names its own reason; recognized header names are found in any
 * case and nothing else is taken for them; and the heads written for the
 * other side drop hop-by-hop fields and keep every other field line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/buf.h"
#include "core/san.h"
#include "proto/http_head.h"
#include "failing_malloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { LIMIT = 8192, LINE_LIMIT = 4096 };

static int no_body(void *owner, const char *at, size_t n)
{
    (void)owner;
    (void)at;
    (void)n;
    return 0;
}

/* Feed `s` in pieces of `step` bytes (0: whole) until the head is done or
 * refused. Returns 0 (done) or the refusal's status, its reason in *why. */
static int feed_steps(struct http_parser *hp, bool req, const char *s, size_t step,
                      const char **why)
{
    http_parser_init(hp, req, LIMIT, LINE_LIMIT, NULL, NULL, no_body);
    size_t len = strlen(s), off = 0;
    *why = NULL;
    while (off < len && !hp->head.done) {
        size_t n = step == 0 || off + step > len ? len - off : step;
        struct http_error err = { 0, NULL };
        long used = http_parser_feed(hp, s + off, n, &err);
        if (used < 0) {
            *why = err.why;
            return err.status;
        }
        assert_true(used > 0); /* every piece of a head is taken */
        off += (size_t)used;
    }
    assert_true(hp->head.done);
    return 0;
}

static const size_t steps[] = { 0, 1, 2, 7 };

/* The verdict on `s`, the same whatever the pieces; the parser is freed. */
static int verdict(bool req, const char *s, const char **why)
{
    int first = -1;
    const char *first_why = NULL;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct http_parser hp;
        const char *w;
        int st = feed_steps(&hp, req, s, steps[i], &w);
        http_parser_free(&hp);
        if (i == 0) {
            first = st;
            first_why = w;
        } else {
            assert_int_equal(st, first);
            assert_true(w == first_why || (w != NULL && first_why != NULL &&
                                           strcmp(w, first_why) == 0));
        }
    }
    *why = first_why;
    return first;
}

static void expect_refused(bool req, const char *s, int status, const char *why)
{
    const char *got;
    int st = verdict(req, s, &got);
    if (st != status || got == NULL || strstr(got, why) == NULL) {
        fail_msg("%s: got %d (%s), want %d (%s)", s, st, got ? got : "-", status, why);
    }
}

static void test_refusals_name_their_reason(void **state)
{
    (void)state;
    static const struct {
        const char *head;
        int status;
        const char *why;
    } cases[] = {
        /* llhttp's own refusals ("" matches any reason) */
        { "GET / HTTP/1.1\r\nHost: x\rY\r\n\r\n", 400, "" },
        { "GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", 400, "" },
        { "GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", 400, "" },
        { "GET /\rx HTTP/1.1\r\nHost: x\r\n\r\n", 400, "" },
        { "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400,
          "" },
        /* what llhttp 8 lets through and legate refuses */
        { "GET / HTTP/1.1\r\nHost: x\r\n\rZ\r\n\r\n", 400, "bare CR in the head" },
        { "GET / HTTP/1.1\r\nHost: x\r\n\n", 400, "bare LF in the head" },
        { "GET / HTTP/1.1\r\n\n", 400, "bare LF in the head" },
        { "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400,
          "obsolete line folding" },
        { "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n", 400,
          "obsolete line folding" },
        { "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "whitespace in a header name" },
        { "GET / HTTP/1.1\r\nX-A: 1\r\nX-B : 2\r\nHost: x\r\n\r\n", 400,
          "whitespace in a header name" },
        { "GET / HTTP/1.1\r\nHo st: x\r\n\r\n", 400, "whitespace in a header name" },
        { "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
          "Transfer-Encoding in an HTTP/1.0 request" },
        { "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501,
          "unknown transfer coding" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_refused(true, cases[i].head, cases[i].status, cases[i].why);
    }
    static const char tail[] = " HTTP/1.1\r\nHost: x\r\n\r\n";
    char *big = malloc(5 + LINE_LIMIT + sizeof(tail));
    assert_non_null(big);
    memcpy(big, "GET /", 5);
    memset(big + 5, 'a', LINE_LIMIT);
    memcpy(big + 5 + LINE_LIMIT, tail, sizeof(tail));
    expect_refused(true, big, 414, "request target too long");
    free(big);
    /* a NUL: llhttp or legate, never passed on */
    const char nul[] = "GET / HTTP/1.1\r\nHost: x\0y\r\n\r\n";
    struct http_parser hp;
    http_parser_init(&hp, true, LIMIT, LINE_LIMIT, NULL, NULL, no_body);
    struct http_error err = { 0, NULL };
    assert_int_equal(http_parser_feed(&hp, nul, sizeof(nul) - 1, &err), -1);
    assert_int_equal(err.status, 400);
    http_parser_free(&hp);
    const char nul_reason[] = "HTTP/1.1 200 O\0K\r\nContent-Length: 0\r\n\r\n";
    http_parser_init(&hp, false, LIMIT, LINE_LIMIT, NULL, NULL, no_body);
    assert_int_equal(http_parser_feed(&hp, nul_reason, sizeof(nul_reason) - 1, &err), -1);
    assert_int_equal(err.status, 502);
    assert_string_equal(err.why, "NUL byte in the head"); /* llhttp lets it through */
    http_parser_free(&hp);
    /* responses: the same checks, refused as 502 */
    expect_refused(false, "HTTP/1.1 200 O\rK\r\nContent-Length: 0\r\n\r\n", 502,
                   "bare CR in the head");
    expect_refused(false, "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n", 502,
                   "obsolete line folding");
    expect_refused(false, "HTTP/1.1 200 OK\r\nServer : x\r\nContent-Length: 0\r\n\r\n", 502,
                   "whitespace in a header name");
    expect_refused(false, "HTTP/1.1 200 OK\nContent-Length: 0\n\n", 502, "");
}

static void test_heads_too_large_are_refused(void **state)
{
    (void)state;
    size_t n = LIMIT + 100;
    char *big = malloc(n + 1);
    assert_non_null(big);
    int k = snprintf(big, n, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big + k, 'b', n - (size_t)k - 4);
    memcpy(big + n - 4, "\r\n\r\n", 5);
    expect_refused(true, big, 431, "head too large");
    free(big);
}

/* A head of `nfields` fields X-<i>: v, then `more` and an empty line. */
static char *head_with_fields(unsigned nfields, const char *more)
{
    size_t cap = 64 + nfields * 16 + strlen(more);
    char *s = malloc(cap);
    assert_non_null(s);
    size_t len = (size_t)snprintf(s, cap, "GET / HTTP/1.1\r\nHost: x\r\n");
    for (unsigned i = 1; i < nfields; i++) {
        len += (size_t)snprintf(s + len, cap - len, "X-%u: v\r\n", i);
    }
    snprintf(s + len, cap - len, "%s\r\n", more);
    return s;
}

/* "<method> /" + `fill` times 'a' + `rest`. */
static char *head_with_target(const char *method, size_t fill, const char *rest)
{
    size_t m = strlen(method), cap = m + 2 + fill + strlen(rest) + 1;
    char *s = malloc(cap);
    assert_non_null(s);
    memcpy(s, method, m);
    memcpy(s + m, " /", 2);
    memset(s + m + 2, 'a', fill);
    memcpy(s + m + 2 + fill, rest, strlen(rest) + 1);
    return s;
}

/* At the field-count and target-length limits, where the feeds stop must
 * not choose between the limit's refusal and an error just after it: the
 * refusal that comes first in the bytes wins, fed whole or byte by byte. */
static void test_limits_reach_one_verdict_however_fed(void **state)
{
    (void)state;
    const char *why;
    static const char tail[] = " HTTP/1.1\r\nHost: x\r\n\r\n";
    char *s = head_with_fields(HTTP_MAX_HEADERS, "");
    assert_int_equal(verdict(true, s, &why), 0); /* the most fields there may be */
    free(s);
    s = head_with_fields(HTTP_MAX_HEADERS, "X-Over: v\r\n");
    expect_refused(true, s, 431, "too many header fields");
    free(s);
    s = head_with_fields(HTTP_MAX_HEADERS, "X-O\tver: v\r\n"); /* a bad name past the limit */
    expect_refused(true, s, 400, "");
    free(s);
    s = head_with_target("PROPPATCH", LINE_LIMIT - 1, tail); /* the longest target allowed */
    assert_int_equal(verdict(true, s, &why), 0);
    free(s);
    s = head_with_target("GET", LINE_LIMIT + 10, "\rx HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_refused(true, s, 400, ""); /* the CR comes before the line may end */
    free(s);
    s = head_with_target("GET", LINE_LIMIT + HTTP_LINE_SLACK + 10, "\rx HTTP/1.1\r\n\r\n");
    expect_refused(true, s, 414, "request target too long"); /* and here after */
    free(s);
}

static void test_well_formed_heads_pass_with_their_fields(void **state)
{
    (void)state;
    const char *s = "GET /a?b HTTP/1.1\r\n"
                    "host: example.com:80\r\n"
                    "CONTENT-length: 0\r\n"
                    "X-Forwarded-For: 10.0.0.1\r\n"
                    "Keep-Alive: timeout=5\r\n"
                    "TE: trailers\r\n"
                    "Hosts: not-a-host\r\n"
                    "Hos: nor-this\r\n"
                    "Expect:  100-continue \r\n"
                    "X-Empty:\r\n"
                    "Connection: keep-alive, X-Hop\r\n"
                    "X-Hop: 1\r\n"
                    "\r\n";
    static const uint8_t kinds[] = {
        HTTP_HDR_HOST, HTTP_HDR_CONTENT_LENGTH, HTTP_HDR_X_FORWARDED_FOR, HTTP_HDR_KEEP_ALIVE,
        HTTP_HDR_TE, HTTP_HDR_OTHER, HTTP_HDR_OTHER, HTTP_HDR_EXPECT, HTTP_HDR_OTHER,
        HTTP_HDR_CONNECTION, HTTP_HDR_OTHER,
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct http_parser hp;
        const char *why;
        assert_int_equal(feed_steps(&hp, true, s, steps[i], &why), 0);
        struct http_head *h = &hp.head;
        assert_int_equal(h->nfields, sizeof(kinds));
        for (unsigned f = 0; f < h->nfields; f++) {
            assert_int_equal(h->fields[f].kind, kinds[f]);
        }
        assert_true(h->expect_continue);
        assert_int_equal(h->framing, HTTP_BODY_NONE);
        size_t len;
        const char *v = http_head_get(h, "HOST", &len);
        assert_non_null(v);
        assert_int_equal(len, strlen("example.com:80"));
        assert_memory_equal(v, "example.com:80", len);
        v = http_head_get(h, "x-empty", &len);
        assert_non_null(v);
        assert_int_equal(len, 0);
        struct http_error err = { 0, NULL };
        assert_int_equal(http_head_check_proxy(h, &err), 0);
        http_parser_free(&hp);
    }
}

static void test_host_values_are_checked(void **state)
{
    (void)state;
    static const struct {
        const char *host;
        int ok;
    } cases[] = {
        { "example.com", 1 },   { "EXAMPLE.com:8080", 1 }, { "[::1]:80", 1 },
        { "a-b_c~d%20", 1 },    { "x!$&'()*+,;=", 1 },     { "", 1 },
        { "user@host", 0 },     { "a b", 0 },              { "a\"b", 0 },
        { "a<b", 0 },           { "a/b", 0 },              { "caf\xc3\xa9", 0 },
        { "a\\b", 0 },          { "a{b}", 0 },             { "a^b", 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char head[256];
        snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", cases[i].host);
        struct http_parser hp;
        const char *why;
        int st = feed_steps(&hp, true, head, 0, &why);
        if (st == 0) {
            struct http_error err = { 0, NULL };
            st = http_head_check_proxy(&hp.head, &err) == 0 ? 0 : err.status;
        }
        http_parser_free(&hp);
        if ((st == 0) != (cases[i].ok == 1)) {
            fail_msg("Host '%s': status %d", cases[i].host, st);
        }
    }
}

/* A head starts in one block from the worker's spares; its field table
 * and buffer move to the heap when they outgrow it, keep every field, and
 * the block goes back to the spares when the head is done with. */
static void test_heads_outgrow_their_block(void **state)
{
    (void)state;
    struct spare spare;
    spare_init(&spare, sizeof(struct http_head_block));
    char head[6000];
    size_t n = (size_t)snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 40; i++) { /* 40 fields, over 3 KiB */
        n += (size_t)snprintf(head + n, sizeof(head) - n, "X-Field-%02d: %070d\r\n", i, i);
    }
    n += (size_t)snprintf(head + n, sizeof(head) - n, "\r\n");
    assert_true(n > 3 * HTTP_FIRST_BUF && n < sizeof(head));
    for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
        struct http_parser hp;
        http_parser_init(&hp, true, LIMIT, LINE_LIMIT, &spare, NULL, no_body);
        size_t off = 0;
        while (!hp.head.done) {
            size_t piece = steps[k] == 0 || off + steps[k] > n ? n - off : steps[k];
            struct http_error err = { 0, NULL };
            long used = http_parser_feed(&hp, head + off, piece, &err);
            assert_true(used > 0);
            off += (size_t)used;
        }
        assert_int_equal(off, n);
        assert_int_equal(hp.head.nfields, 41);
        assert_ptr_not_equal(hp.head.buf, hp.head.block->buf);
        assert_ptr_not_equal(hp.head.fields, hp.head.block->fields);
        for (int i = 0; i < 40; i++) {
            char name[32], want[80];
            snprintf(name, sizeof(name), "x-field-%02d", i);
            snprintf(want, sizeof(want), "%070d", i);
            size_t len;
            const char *v = http_head_get(&hp.head, name, &len);
            assert_non_null(v);
            assert_int_equal(len, 70);
            assert_memory_equal(v, want, 70);
        }
        http_parser_free(&hp); /* the block back to the spares, the rest freed */
        assert_int_equal(spare.n, LEGATE_ASAN ? 0 : 1);
        http_parser_init(&hp, true, LIMIT, LINE_LIMIT, &spare, NULL, no_body);
        static const char small[] = "GET / HTTP/1.1\r\nHost: y\r\n\r\n";
        struct http_error err = { 0, NULL };
        assert_int_equal(http_parser_feed(&hp, small, sizeof(small) - 1, &err),
                         (long)sizeof(small) - 1);
        assert_int_equal(spare.n, 0); /* the next head took it */
        assert_ptr_equal(hp.head.buf, hp.head.block->buf);
        http_parser_free(&hp);
        assert_int_equal(spare.n, LEGATE_ASAN ? 0 : 1);
    }
    spare_drain(&spare);
    assert_int_equal(spare.n, 0);
}

/* Head `in` (a request when `req`), fed `step` bytes at a time, written
 * for the other side with `o`, is exactly `want`. */
static void expect_written(bool req, const char *in, size_t step, const struct http_out *o,
                           const char *want)
{
    struct http_parser hp;
    const char *why;
    assert_int_equal(feed_steps(&hp, req, in, step, &why), 0);
    struct buf_pool pool;
    buf_pool_init(&pool, 4096, 4);
    struct buf_queue q;
    buf_queue_init(&q);
    assert_int_equal(req ? http_head_write_request(&hp.head, o, &q, &pool)
                         : http_head_write_response(&hp.head, o, &q, &pool), 0);
    static char out[4096];
    assert_true(q.bytes < sizeof(out));
    buf_queue_peek(&q, 0, out, (size_t)q.bytes);
    out[q.bytes] = '\0';
    assert_string_equal(out, want);
    buf_queue_clear(&q, &pool);
    buf_pool_drain(&pool);
    http_parser_free(&hp);
}

static void test_written_heads_keep_end_to_end_fields(void **state)
{
    (void)state;
    const struct http_out up = { .forwarded_for = "127.0.0.1", .via = true };
    expect_written(true,
                   "POST /up HTTP/1.1\r\n"
                   "Host: svc\r\n"
                   "Connection: X-Hop\r\n"
                   "X-Hop: dropped\r\n"
                   "Keep-Alive: timeout=5\r\n"
                   "User-Agent:curl\r\n"
                   "X-Trail: v \t\r\n"
                   "X-Forwarded-For: 10.0.0.1\r\n"
                   "X-Empty:\r\n"
                   "Content-Length: 3\r\n"
                   "\r\n", 1, &up,
                   "POST /up HTTP/1.1\r\n"
                   "Host: svc\r\n"
                   "User-Agent: curl\r\n"
                   "X-Trail: v\r\n"
                   "X-Forwarded-For: 10.0.0.1, 127.0.0.1\r\n"
                   "X-Empty: \r\n"
                   "Via: 1.1 legate\r\n"
                   "Content-Length: 3\r\n"
                   "\r\n");
    const struct http_out down = { .via = false, .close = true, .chunked = true,
                                   .extra_name = "X-Arm", .extra_value = "experiment" };
    expect_written(false,
                   "HTTP/1.1 404 Not Found\r\n"
                   "Server: nginx\r\n"
                   "Transfer-Encoding: chunked\r\n"
                   "Proxy-Connection: keep-alive\r\n"
                   "Set-Cookie: a=1\r\n"
                   "Set-Cookie: b=2\r\n"
                   "\r\n", 3, &down,
                   "HTTP/1.1 404 Not Found\r\n"
                   "Server: nginx\r\n"
                   "Set-Cookie: a=1\r\n"
                   "Set-Cookie: b=2\r\n"
                   "Transfer-Encoding: chunked\r\n"
                   "X-Arm: experiment\r\n"
                   "Connection: close\r\n"
                   "\r\n");
}

/* A head written past the writer's 2 KiB buffer goes in more than one
 * append: when one fails, none of the head stays queued. */
static void test_a_head_that_cannot_be_written_leaves_nothing(void **state)
{
    (void)state;
    char head[4096];
    size_t len = (size_t)snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 40; i++) {
        len += (size_t)snprintf(head + len, sizeof(head) - len,
                                "X-Field-%02d: %060d\r\n", i, i);
    }
    snprintf(head + len, sizeof(head) - len, "Content-Length: 0\r\n\r\n");
    struct http_parser hp;
    const char *why;
    assert_int_equal(feed_steps(&hp, false, head, 0, &why), 0);
    struct buf_pool pool;
    buf_pool_init(&pool, 512, 0); /* every chunk a malloc */
    struct buf_queue q;
    buf_queue_init(&q);
    assert_int_equal(buf_queue_append(&q, &pool, "before", 6), 0);
    struct http_out o = { .via = true };
    mallocs_left = 3; /* the first 2 KiB go in, the rest cannot */
    assert_int_equal(http_head_write_response(&hp.head, &o, &q, &pool), -1);
    mallocs_left = -1;
    assert_int_equal(q.bytes, 6);
    assert_int_equal(pool.nused, 1);
    assert_int_equal(http_head_write_response(&hp.head, &o, &q, &pool), 0);
    assert_true(q.bytes > 6 + 2048);
    buf_queue_clear(&q, &pool);
    buf_pool_drain(&pool);
    http_parser_free(&hp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals_name_their_reason),
        cmocka_unit_test(test_heads_too_large_are_refused),
        cmocka_unit_test(test_limits_reach_one_verdict_however_fed),
        cmocka_unit_test(test_well_formed_heads_pass_with_their_fields),
        cmocka_unit_test(test_host_values_are_checked),
        cmocka_unit_test(test_heads_outgrow_their_block),
        cmocka_unit_test(test_written_heads_keep_end_to_end_fields),
        cmocka_unit_test(test_a_head_that_cannot_be_written_leaves_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
