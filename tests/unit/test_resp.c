/* Unit tests for resp: requests and responses parsed whole, byte by byte
 * and at every split point give the same result; every malformed input and
 * every limit is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proto/resp.h"

#include <stdlib.h>
#include <string.h>

/* Feed `s` to a fresh request parser in pieces of `step` bytes (0: whole).
 * Returns the final code; *used_total is the bytes the message took. */
static int req_in_steps(struct resp_req *r, const char *s, size_t len, size_t step,
                        const struct resp_limits *lim, size_t *used_total)
{
    resp_req_reset(r);
    size_t off = 0;
    int rc = RESP_AGAIN;
    while (off < len && rc == RESP_AGAIN) {
        size_t n = step == 0 || off + step > len ? len - off : step;
        size_t used = 0;
        rc = resp_req_feed(r, (const uint8_t *)s + off, n, &used, lim);
        off += used;
    }
    *used_total = off;
    return rc;
}

static void check_args(const struct resp_req *r, const char *s, const char *const *want,
                       uint32_t n)
{
    assert_int_equal(r->nargs, n);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(r->args[i].len, strlen(want[i]));
        assert_memory_equal(s + r->args[i].off, want[i], strlen(want[i]));
        if (r->inline_form) {
            assert_int_equal(r->args[i].hdr, 0);
        } else {
            /* the header the client wrote sits right before the data */
            char hdr[RESP_HEADER_MAX];
            size_t hn = resp_header(hdr, '$', r->args[i].len);
            assert_int_equal(r->args[i].hdr, hn);
            assert_memory_equal(s + r->args[i].off - hn, hdr, hn);
        }
    }
}

static void test_request_every_split(void **state)
{
    (void)state;
    static const char req[] = "*3\r\n$3\r\nset\r\n$5\r\nmykey\r\n$12\r\nhello\r\nworld\r\n";
    static const char *const want[] = { "set", "mykey", "hello\r\nworld" };
    size_t len = sizeof(req) - 1;
    struct resp_req r;
    resp_req_init(&r);
    for (size_t step = 0; step <= len; step++) {
        size_t used;
        assert_int_equal(req_in_steps(&r, req, len, step, &resp_default_limits, &used),
                         RESP_DONE);
        assert_int_equal(used, len);
        assert_int_equal(r.size, len);
        assert_string_equal(r.name, "SET");
        assert_false(r.inline_form);
        check_args(&r, req, want, 3);
    }
    /* two pipelined requests: the first stops exactly at its end */
    static const char two[] = "*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    size_t used;
    resp_req_reset(&r);
    assert_int_equal(resp_req_feed(&r, (const uint8_t *)two, sizeof(two) - 1, &used,
                                   &resp_default_limits), RESP_DONE);
    assert_int_equal(used, 14);
    resp_req_reset(&r);
    size_t used2;
    assert_int_equal(resp_req_feed(&r, (const uint8_t *)two + used, sizeof(two) - 1 - used,
                                   &used2, &resp_default_limits), RESP_DONE);
    assert_string_equal(r.name, "GET");
    resp_req_free(&r);
}

static void test_request_inline_and_empty(void **state)
{
    (void)state;
    struct resp_req r;
    resp_req_init(&r);
    static const char in[] = "  get   foo\r\n";
    static const char *const want[] = { "get", "foo" };
    for (size_t step = 0; step < sizeof(in); step++) {
        size_t used;
        assert_int_equal(req_in_steps(&r, in, sizeof(in) - 1, step, &resp_default_limits,
                                      &used), RESP_DONE);
        assert_true(r.inline_form);
        assert_string_equal(r.name, "GET");
        check_args(&r, in, want, 2);
    }
    size_t used;
    assert_int_equal(req_in_steps(&r, "\r\n", 2, 0, &resp_default_limits, &used), RESP_DONE);
    assert_int_equal(r.nargs, 0); /* blank line: skipped */
    assert_int_equal(req_in_steps(&r, "*0\r\n", 4, 0, &resp_default_limits, &used), RESP_DONE);
    assert_int_equal(r.nargs, 0); /* *0: skipped, as Redis */
    assert_int_equal(req_in_steps(&r, "*1\r\n$0\r\n\r\n", 10, 0, &resp_default_limits, &used),
                     RESP_DONE);
    assert_int_equal(r.nargs, 1);
    assert_int_equal(r.args[0].len, 0);
    /* incomplete input asks for more */
    assert_int_equal(req_in_steps(&r, "*2\r\n$3\r\nGET\r\n$1\r\nk\r", 19, 0,
                                  &resp_default_limits, &used), RESP_AGAIN);
    resp_req_free(&r);
}

static void test_request_names(void **state)
{
    (void)state;
    struct resp_req r;
    resp_req_init(&r);
    size_t used;
    static const char nul[] = "*1\r\n$5\r\nGET\0X\r\n";
    assert_int_equal(req_in_steps(&r, nul, sizeof(nul) - 1, 0, &resp_default_limits, &used),
                     RESP_DONE);
    assert_true(r.name_too_long); /* never mistaken for GET */
    static const char longname[] = "*1\r\n$40\r\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n";
    assert_int_equal(req_in_steps(&r, longname, sizeof(longname) - 1, 3, &resp_default_limits,
                                  &used), RESP_DONE);
    assert_true(r.name_too_long);
    resp_req_free(&r);
}

static const struct {
    const char *in;
    const char *why;
} bad_requests[] = {
    { "*-5\r\n", "negative multibulk count" },
    { "*abc\r\n", "invalid multibulk count" },
    { "*\r\n", "invalid multibulk count" },
    { "*1\n", "invalid multibulk count" },
    { "*1\rX", "expected LF after multibulk count" },
    { "*1\r\nX3\r\nGET\r\n", "expected '$'" },
    { "*1\r\n$abc\r\n", "invalid bulk length" },
    { "*1\r\n$-1\r\n", "invalid bulk length" },
    { "*1\r\n$3\rX", "expected LF after bulk length" },
    { "*1\r\n$3\r\nGETXX", "expected CRLF after bulk string" },
    { "*1\r\n$3\r\nGET\rX", "expected CRLF after bulk string" },
    { "*99999999999999999999\r\n", "too many arguments" },
    { "*1\r\n$99999999999999999999\r\n", "bulk string too long" },
    { "SET \"a b\" c\r\n", "quoted inline arguments" },
    { "GET a\0b\r\n", "NUL byte" },
};

static void test_request_malformed(void **state)
{
    (void)state;
    struct resp_req r;
    resp_req_init(&r);
    for (size_t i = 0; i < sizeof(bad_requests) / sizeof(bad_requests[0]); i++) {
        size_t len = strlen(bad_requests[i].in);
        if (strstr(bad_requests[i].why, "NUL") != NULL) {
            len = 9;
        }
        for (size_t step = 0; step <= 1; step++) {
            size_t used;
            int rc = req_in_steps(&r, bad_requests[i].in, len, step, &resp_default_limits, &used);
            if (rc != RESP_ERROR || strstr(r.error, bad_requests[i].why) == NULL) {
                print_error("case %zu step %zu: rc=%d error=%s\n", i, step, rc,
                            r.error ? r.error : "(none)");
                fail();
            }
        }
    }
    resp_req_free(&r);
}

static void test_request_limits(void **state)
{
    (void)state;
    struct resp_limits lim = { .max_args = 2, .max_bulk = 4, .max_request = 40,
                               .max_inline = 8 };
    struct resp_req r;
    resp_req_init(&r);
    size_t used;
    assert_int_equal(req_in_steps(&r, "*2\r\n$4\r\nabcd\r\n$1\r\nk\r\n", 21, 0, &lim, &used),
                     RESP_DONE);
    assert_int_equal(req_in_steps(&r, "*3\r\n", 4, 0, &lim, &used), RESP_ERROR);
    assert_string_equal(r.error, "too many arguments");
    assert_int_equal(req_in_steps(&r, "*1\r\n$5\r\n", 8, 0, &lim, &used), RESP_ERROR);
    assert_string_equal(r.error, "bulk string too long");
    assert_int_equal(req_in_steps(&r, "PING PONG PANG\r\n", 16, 0, &lim, &used), RESP_ERROR);
    assert_string_equal(r.error, "inline command too long");
    assert_int_equal(req_in_steps(&r, "a b c\n", 6, 0, &lim, &used), RESP_ERROR);
    assert_string_equal(r.error, "too many arguments");
    struct resp_limits small = { .max_args = 100, .max_bulk = 100, .max_request = 20,
                                 .max_inline = 100 };
    assert_int_equal(req_in_steps(&r, "*2\r\n$10\r\n0123456789\r\n$1\r\nk\r\n", 29, 0, &small,
                                  &used), RESP_ERROR);
    assert_string_equal(r.error, "request too large");
    resp_req_free(&r);
}

static int rsp_in_steps(struct resp_rsp *r, const char *s, size_t len, size_t step,
                        size_t *used_total)
{
    resp_rsp_init(r);
    size_t off = 0;
    int rc = RESP_AGAIN;
    while (off < len && rc == RESP_AGAIN) {
        size_t n = step == 0 || off + step > len ? len - off : step;
        size_t used = 0;
        rc = resp_rsp_feed(r, (const uint8_t *)s + off, n, &used, &resp_default_limits);
        off += used;
    }
    *used_total = off;
    return rc;
}

static void test_responses_every_type_and_split(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        uint8_t type;
        int64_t integer;
        int64_t count;
        bool error;
        bool null;
    } ok[] = {
        { "+OK\r\n", '+', 0, 0, false, false },
        { "-ERR no\r\n", '-', 0, 0, true, false },
        { ":-42\r\n", ':', -42, 0, false, false },
        { ":9223372036854775807\r\n", ':', INT64_MAX, 0, false, false },
        { "$5\r\nhe\r\nl\r\n", '$', 0, 0, false, false },
        { "$0\r\n\r\n", '$', 0, 0, false, false },
        { "$-1\r\n", '$', 0, -1, false, true },
        { "*-1\r\n", '*', 0, -1, false, true },
        { "*0\r\n", '*', 0, 0, false, false },
        { "*3\r\n$1\r\na\r\n*2\r\n:1\r\n*1\r\n+x\r\n$-1\r\n", '*', 0, 3, false, false },
        { "_\r\n", '_', 0, 0, false, true },
        { ",3.14\r\n", ',', 0, 0, false, false },
        { "#t\r\n", '#', 0, 0, false, false },
        { "(12345678901234567890123\r\n", '(', 0, 0, false, false },
        { "!5\r\nERR x\r\n", '!', 0, 0, true, false },
        { "=7\r\ntxt:abc\r\n", '=', 0, 0, false, false },
        { "%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n:2\r\n", '%', 0, 2, false, false },
        { "~2\r\n+a\r\n+b\r\n", '~', 0, 2, false, false },
        { ">2\r\n+message\r\n+hi\r\n", '>', 0, 2, false, false },
        { "|1\r\n+ttl\r\n:3\r\n+OK\r\n", '+', 0, 0, false, false },
        { "*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n", '*', 0, 2, false, false },
    };
    struct resp_rsp r;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        size_t len = strlen(ok[i].in);
        for (size_t step = 0; step <= len; step++) {
            size_t used;
            int rc = rsp_in_steps(&r, ok[i].in, len, step, &used);
            if (rc != RESP_DONE || used != len || r.type != ok[i].type ||
                r.is_error != ok[i].error || r.is_null != ok[i].null ||
                (ok[i].type == ':' && r.integer != ok[i].integer) ||
                (ok[i].count != 0 && r.count != ok[i].count)) {
                print_error("case %zu step %zu: rc=%d used=%zu type=%c err=%s\n", i, step, rc,
                            used, r.type, r.error ? r.error : "-");
                fail();
            }
        }
    }
    /* a reply followed by another stops at its own end */
    size_t used;
    assert_int_equal(rsp_in_steps(&r, "+OK\r\n:1\r\n", 9, 0, &used), RESP_DONE);
    assert_int_equal(used, 5);
}

/* A status or error line may hold max_inline bytes, whether it arrives
 * whole (one scan) or byte by byte. */
static void test_reply_line_limit(void **state)
{
    (void)state;
    struct resp_limits lim = resp_default_limits;
    lim.max_inline = 8;
    static const struct {
        const char *in;
        int rc;
    } cases[] = {
        { "+12345678\r\n", RESP_DONE },  { "-12345678\r\n", RESP_DONE },
        { "+123456789\r\n", RESP_ERROR }, { "-123456789\r\n", RESP_ERROR },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = strlen(cases[i].in);
        for (size_t step = 0; step <= len; step++) {
            struct resp_rsp r;
            resp_rsp_init(&r);
            size_t off = 0;
            int rc = RESP_AGAIN;
            while (off < len && rc == RESP_AGAIN) {
                size_t n = step == 0 || off + step > len ? len - off : step;
                size_t used = 0;
                rc = resp_rsp_feed(&r, (const uint8_t *)cases[i].in + off, n, &used, &lim);
                off += used;
            }
            if (rc != cases[i].rc || (rc == RESP_DONE && (off != len || r.size != len ||
                                                         r.is_error != (cases[i].in[0] == '-')))) {
                print_error("case %zu step %zu: rc=%d used=%zu\n", i, step, rc, off);
                fail();
            }
            if (rc == RESP_ERROR) {
                assert_string_equal(r.error, "reply line too long");
            }
        }
    }
}

static void test_responses_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "?\r\n", "+OK\n", "+OK\rX", ":\r\n", ":12a\r\n", ":99999999999999999999\r\n",
        "$abc\r\n", "$-2\r\n", "~-1\r\n", "$3\r\nabcX", "$3\r\nabc\rX", "_x\r\n", "*1\rX",
        "*1\r\n?",
    };
    struct resp_rsp r;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = strlen(bad[i]);
        for (size_t step = 0; step <= len; step++) { /* whole, then every split */
            size_t used;
            int rc = rsp_in_steps(&r, bad[i], len, step, &used);
            if (rc != RESP_ERROR || r.error == NULL) {
                print_error("case %zu (%s) step %zu: rc=%d\n", i, bad[i], step, rc);
                fail();
            }
        }
    }
    /* nesting beyond the limit */
    char deep[RESP_MAX_DEPTH * 4 + 8];
    size_t off = 0;
    for (int i = 0; i <= RESP_MAX_DEPTH; i++) {
        memcpy(deep + off, "*1\r\n", 4);
        off += 4;
    }
    size_t used;
    assert_int_equal(rsp_in_steps(&r, deep, off, 0, &used), RESP_ERROR);
    assert_string_equal(r.error, "reply nested too deeply");
}

static void test_big_bulk_is_skipped_not_scanned(void **state)
{
    (void)state;
    /* a 64 MiB value fed in 1 MiB pieces: framed exactly */
    size_t big = 64u << 20;
    size_t hdr = 11; /* "$67108864\r\n" */
    char *buf = malloc(hdr + big + 2);
    assert_non_null(buf);
    memcpy(buf, "$67108864\r\n", hdr);
    memset(buf + hdr, '\n', big); /* CR/LF inside the payload mean nothing */
    memcpy(buf + hdr + big, "\r\n", 2);
    struct resp_rsp r;
    size_t used;
    assert_int_equal(rsp_in_steps(&r, buf, hdr + big + 2, 1 << 20, &used), RESP_DONE);
    assert_int_equal(used, hdr + big + 2);
    free(buf);
}

static void test_header_formatting(void **state)
{
    (void)state;
    char out[RESP_HEADER_MAX];
    size_t n = resp_header(out, '*', 0);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "*0\r\n", 4);
    n = resp_header(out, '$', 1234567);
    assert_int_equal(n, 10);
    assert_memory_equal(out, "$1234567\r\n", 10);
    n = resp_header(out, ':', UINT64_MAX);
    assert_int_equal(n, 23);
    assert_memory_equal(out, ":18446744073709551615\r\n", 23);
}

static void test_command_prefix(void **state)
{
    (void)state;
    char out[RESP_COMMAND_PREFIX_MAX];
    size_t n = resp_command_prefix(out, 7, "MSET", 4);
    assert_int_equal(n, 14);
    assert_memory_equal(out, "*7\r\n$4\r\nMSET\r\n", 14);
    /* the longest: 20-digit count and a name of RESP_NAME_MAX bytes */
    char name[RESP_NAME_MAX];
    memset(name, 'N', sizeof(name));
    n = resp_command_prefix(out, UINT64_MAX, name, sizeof(name));
    assert_int_equal(n, 23 + 5 + RESP_NAME_MAX + 2);
    assert_true(n <= RESP_COMMAND_PREFIX_MAX);
    assert_memory_equal(out, "*18446744073709551615\r\n$32\r\nNNNN", 32);
}

static void test_idle_request_sheds_its_arguments(void **state)
{
    (void)state;
    struct resp_args_spare spare = { 0 };
    struct resp_req a, b;
    resp_req_init(&a);
    resp_req_init(&b);
    static const char req[] = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    size_t used = 0;
    assert_int_equal(resp_req_feed(&a, (const uint8_t *)req, sizeof(req) - 1, &used,
                                   &resp_default_limits), RESP_DONE);
    resp_req_reset(&a);
    resp_req_shed(&a, &spare);
    assert_null(a.args);
    assert_non_null(spare.args);
    resp_req_adopt(&b, &spare); /* another client takes it */
    assert_null(spare.args);
    assert_int_equal(resp_req_feed(&b, (const uint8_t *)req, sizeof(req) - 1, &used,
                                   &resp_default_limits), RESP_DONE);
    assert_int_equal(b.nargs, 2);
    /* A half-parsed request keeps its array. */
    assert_int_equal(resp_req_feed(&a, (const uint8_t *)req, 9, &used, &resp_default_limits),
                     RESP_AGAIN);
    resp_req_shed(&a, &spare);
    assert_non_null(a.args);
    resp_req_free(&a);
    resp_req_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_request_sheds_its_arguments),
        cmocka_unit_test(test_request_every_split),
        cmocka_unit_test(test_request_inline_and_empty),
        cmocka_unit_test(test_request_names),
        cmocka_unit_test(test_request_malformed),
        cmocka_unit_test(test_request_limits),
        cmocka_unit_test(test_responses_every_type_and_split),
        cmocka_unit_test(test_responses_malformed),
        cmocka_unit_test(test_big_bulk_is_skipped_not_scanned),
        cmocka_unit_test(test_header_formatting),
        cmocka_unit_test(test_command_prefix),
        cmocka_unit_test(test_reply_line_limit),
    };
    return cmocka_run_group_tests_name("resp", tests, NULL, NULL);
}
