/* Unit tests for mc_proto: memcached text requests and replies parsed
 * whole, byte by byte and at every split point give the same result; every
 * malformed input and every limit is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proto/mc_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Feed `s` to `r` (reset first) in pieces of `step` bytes (0: whole).
 * Returns the final code; *took is the bytes the message used. */
static int req_in_steps(struct mc_req *r, const char *s, size_t len, size_t step,
                        const struct mc_limits *lim, size_t *took)
{
    mc_req_reset(r);
    size_t off = 0;
    int rc = MC_AGAIN;
    while (off < len && rc == MC_AGAIN) {
        size_t n = step == 0 || off + step > len ? len - off : step;
        size_t used = 0;
        rc = mc_req_feed(r, (const uint8_t *)s + off, n, &used, lim);
        assert_true(used <= n);
        off += used;
    }
    *took = off;
    return rc;
}

/* The same for a reply; `until_mn` as after a quiet meta request. */
static int rsp_steps(struct mc_rsp *r, const char *s, size_t len, size_t step, bool until_mn,
                     size_t *took)
{
    mc_rsp_init(r);
    r->until_mn = until_mn;
    size_t off = 0;
    int rc = MC_AGAIN;
    while (off < len && rc == MC_AGAIN) {
        size_t n = step == 0 || off + step > len ? len - off : step;
        size_t used = 0;
        rc = mc_rsp_feed(r, (const uint8_t *)s + off, n, &used);
        assert_true(used <= n);
        off += used;
    }
    *took = off;
    return rc;
}

static int rsp_in_steps(struct mc_rsp *r, const char *s, size_t len, size_t step, size_t *took)
{
    return rsp_steps(r, s, len, step, false, took);
}

static void check_tok(const struct mc_req *r, const char *s, uint32_t i, const char *want)
{
    assert_true(i < r->ntok);
    assert_int_equal(r->tok[i].len, strlen(want));
    assert_memory_equal(s + r->tok[i].off, want, strlen(want));
}

static void test_set_every_split(void **state)
{
    (void)state;
    /* the data block may hold CR, LF and spaces: it is skipped, not read */
    static const char req[] = "set k1 5 0 12\r\nhello\r\nworld\r\nget k1\r\n";
    size_t first = strlen("set k1 5 0 12\r\nhello\r\nworld\r\n");
    struct mc_req r;
    mc_req_init(&r);
    for (size_t step = 0; step <= sizeof(req) - 1; step++) {
        size_t took;
        assert_int_equal(req_in_steps(&r, req, sizeof(req) - 1, step, &mc_default_limits,
                                      &took), MC_DONE);
        assert_int_equal(took, first);
        assert_int_equal(r.size, first);
        assert_int_equal(r.line, strlen("set k1 5 0 12\r\n"));
        assert_int_equal(r.kind, MC_STORE);
        assert_string_equal(r.name, "set");
        assert_int_equal(r.ntok, 5);
        assert_int_equal(r.first_key, 1);
        assert_int_equal(r.nkeys, 1);
        check_tok(&r, req, 1, "k1");
        assert_false(r.noreply);
    }
    mc_req_free(&r);
}

/* Parse the get line `req` whole and cut at every point: each time one
 * MC_GET of exactly `nkeys` keys equal to `keys`, using all of `req`. */
static void check_get_every_split(const char *req, const char *const *keys, uint32_t nkeys)
{
    size_t len = strlen(req);
    struct mc_req r;
    mc_req_init(&r);
    for (size_t step = 0; step <= len; step++) {
        size_t took;
        assert_int_equal(req_in_steps(&r, req, len, step, &mc_default_limits, &took), MC_DONE);
        assert_int_equal(r.kind, MC_GET);
        assert_int_equal(r.ntok, nkeys + 1);
        assert_int_equal(r.nkeys, nkeys);
        for (uint32_t k = 0; k < nkeys; k++) {
            check_tok(&r, req, k + 1, keys[k]);
        }
        assert_int_equal(r.size, len);
    }
    mc_req_free(&r);
}

static void test_get_many_keys_and_lf_only(void **state)
{
    (void)state;
    static const char *const keys[] = { "a", "bb", "ccc" };
    check_get_every_split("gets  a bb   ccc\n", keys, 3);
    struct mc_req r;
    mc_req_init(&r);
    static const char gat[] = "gat 100 x y\r\n";
    size_t took;
    assert_int_equal(req_in_steps(&r, gat, sizeof(gat) - 1, 0, &mc_default_limits, &took),
                     MC_DONE);
    assert_int_equal(r.kind, MC_GAT);
    assert_int_equal(r.first_key, 2);
    assert_int_equal(r.nkeys, 2);
    check_tok(&r, gat, 2, "x");
    mc_req_free(&r);
}

/* Tokens split at spaces only: a tab or another control byte is part of
 * the key, as memcached and nutcracker read it (memaslap's keys start with
 * 0x10 bytes). */
static void test_control_bytes_belong_to_keys(void **state)
{
    (void)state;
    static const char *const keys[] = { "\x10\x10k\ta", "\x7f\x01" };
    check_get_every_split("get \x10\x10k\ta \x7f\x01\r\n", keys, 2);
}

static void test_keyed_and_noreply(void **state)
{
    (void)state;
    struct mc_req r;
    mc_req_init(&r);
    size_t took;
    static const struct {
        const char *req;
        int kind;
        bool noreply;
    } cases[] = {
        { "delete k\r\n", MC_KEYED, false },
        { "delete k noreply\r\n", MC_KEYED, true },
        { "delete k 0\r\n", MC_KEYED, false },
        { "incr k 5\r\n", MC_KEYED, false },
        { "decr k 5 noreply\r\n", MC_KEYED, true },
        { "touch k 10\r\n", MC_KEYED, false },
        { "set k 0 0 1 noreply\r\nx\r\n", MC_STORE, true },
        { "cas k 0 0 1 99 noreply\r\nx\r\n", MC_STORE, true },
        { "cas k 0 0 1 99\r\nx\r\n", MC_STORE, false },
        { "set k 0 0 1 noreplyx\r\nx\r\n", MC_STORE, false },
        { "version\r\n", MC_VERSION, false },
        { "quit\r\n", MC_QUIT, false },
        { "stats\r\n", MC_UNKNOWN, false },
        { "GET k\r\n", MC_UNKNOWN, false }, /* memcached's names are lower case */
        { "\r\n", MC_UNKNOWN, false },
        { "averyveryverylongcommandname k\r\n", MC_UNKNOWN, false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *s = cases[i].req;
        assert_int_equal(req_in_steps(&r, s, strlen(s), 1, &mc_default_limits, &took), MC_DONE);
        assert_int_equal(took, strlen(s));
        assert_int_equal(r.kind, cases[i].kind);
        assert_int_equal(r.noreply, cases[i].noreply);
    }
    mc_req_free(&r);
}

static void test_malformed_requests(void **state)
{
    (void)state;
    static const struct {
        const char *req;
        const char *why;
        size_t len; /* 0: up to the NUL */
    } cases[] = {
        { "get a\rb\r\n", "CR without LF in the command line", 0 },
        { "get a\0b\r\n", "NUL byte in the command line", 9 },
        { "set k 0 0 abc\r\nxyz\r\n", "bad data chunk", 0 },
        { "set k 0 0 -1\r\n", "bad data chunk", 0 },
        { "set k 0 0 3\r\nabcd\r\n", "bad data chunk", 0 },
        { "set k 0 0 3\r\nabc\rX", "bad data chunk", 0 },
        { "set k 0 0\r\n", "bad command line format", 0 },
        { "get\r\n", "bad command line format", 0 },
        { "gat 10\r\n", "bad command line format", 0 },
        { "incr k\r\n", "bad command line format", 0 },
        { "delete k 0 noreply extra\r\n", "bad command line format", 0 },
        { "version now\r\n", "bad command line format", 0 },
        { "set k 0 0 99999999999999999999999\r\n", "bad data chunk", 0 },
    };
    struct mc_req r;
    mc_req_init(&r);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *s = cases[i].req;
        size_t len = cases[i].len ? cases[i].len : strlen(s);
        for (size_t step = 0; step <= 3; step++) {
            size_t took;
            assert_int_equal(req_in_steps(&r, s, len, step, &mc_default_limits, &took),
                             MC_ERROR);
            assert_string_equal(r.error, cases[i].why);
        }
    }
    mc_req_free(&r);
}

static void test_limits(void **state)
{
    (void)state;
    struct mc_req r;
    mc_req_init(&r);
    size_t took;
    char key[300];
    memset(key, 'k', sizeof(key));
    char line[400];
    /* a key of 250 bytes passes, 251 does not */
    int n = snprintf(line, sizeof(line), "get %.250s\r\n", key);
    assert_int_equal(req_in_steps(&r, line, (size_t)n, 7, &mc_default_limits, &took), MC_DONE);
    n = snprintf(line, sizeof(line), "get %.251s\r\n", key);
    assert_int_equal(req_in_steps(&r, line, (size_t)n, 7, &mc_default_limits, &took), MC_ERROR);
    assert_string_equal(r.error, "key longer than 250 bytes");
    n = snprintf(line, sizeof(line), "delete %.251s\r\n", key);
    assert_int_equal(req_in_steps(&r, line, (size_t)n, 0, &mc_default_limits, &took), MC_ERROR);

    struct mc_limits lim = { .max_tokens = 5, .max_data = 10, .max_request = 40,
                             .max_line = 24 };
    static const char five[] = "get a b c d\r\n", six[] = "get a b c d e\r\n";
    assert_int_equal(req_in_steps(&r, five, strlen(five), 0, &lim, &took), MC_DONE);
    assert_int_equal(req_in_steps(&r, six, strlen(six), 0, &lim, &took), MC_ERROR);
    assert_string_equal(r.error, "too many keys in the command line");

    static const char d10[] = "set k 0 0 10\r\n0123456789\r\n";
    static const char d11[] = "set k 0 0 11\r\n";
    assert_int_equal(req_in_steps(&r, d10, strlen(d10), 3, &lim, &took), MC_DONE);
    assert_int_equal(req_in_steps(&r, d11, strlen(d11), 3, &lim, &took), MC_ERROR);
    assert_string_equal(r.error, "data block too large");

    static const char big[] = "set kkkkkkkkkkkkkkkk 0 0 10\r\n"; /* 29 + 12 > 40 */
    lim.max_line = 64;
    assert_int_equal(req_in_steps(&r, big, strlen(big), 0, &lim, &took), MC_ERROR);
    assert_string_equal(r.error, "request too large");

    lim.max_line = 24; /* 24 bytes of line pass (its end included), 25 do not */
    static const char l24[] = "get aaaaaaaaaaaaaaaaaa\r\n", l25[] = "get aaaaaaaaaaaaaaaaaaa\r\n";
    assert_int_equal(strlen(l24), 24);
    assert_int_equal(req_in_steps(&r, l24, strlen(l24), 1, &lim, &took), MC_DONE);
    assert_int_equal(req_in_steps(&r, l25, strlen(l25), 1, &lim, &took), MC_ERROR);
    assert_string_equal(r.error, "command line too long");
    mc_req_free(&r);
}

static void test_replies_every_split(void **state)
{
    (void)state;
    static const char rsp[] = "VALUE a 0 5\r\nab\r\nc\r\nVALUE bb 7 0 42\r\n\r\nEND\r\nSTORED\r\n";
    size_t first = strlen(rsp) - strlen("STORED\r\n");
    for (size_t step = 0; step <= sizeof(rsp) - 1; step++) {
        struct mc_rsp r;
        size_t took;
        assert_int_equal(rsp_in_steps(&r, rsp, sizeof(rsp) - 1, step, &took), MC_DONE);
        assert_int_equal(took, first);
        assert_int_equal(r.size, first);
        assert_int_equal(r.values, 2);
        assert_false(r.is_error);
    }
    static const struct {
        const char *rsp;
        bool err;
    } lines[] = {
        { "STORED\r\n", false }, { "NOT_STORED\r\n", false }, { "EXISTS\r\n", false },
        { "NOT_FOUND\r\n", false }, { "DELETED\r\n", false }, { "TOUCHED\r\n", false },
        { "END\r\n", false }, { "12345\r\n", false }, { "VERSION 1.6.18\r\n", false },
        { "OK\r\n", false }, { "ERROR\r\n", true }, { "CLIENT_ERROR bad data chunk\r\n", true },
        { "SERVER_ERROR out of memory storing object\r\n", true },
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        struct mc_rsp r;
        size_t took;
        const char *s = lines[i].rsp;
        assert_int_equal(rsp_in_steps(&r, s, strlen(s), 1, &took), MC_DONE);
        assert_int_equal(took, strlen(s));
        assert_int_equal(r.is_error, lines[i].err);
    }
}

static void test_malformed_replies(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "WHAT\r\n",
        "STORED\n",
        "STORED\rX",
        "\r\n",
        "VALUE a 0\r\n",
        "VALUE a 0 x\r\n",
        "VALUE a 0 1 2 3\r\nx\r\nEND\r\n",
        "VALUE a 0 1\r\nxy\r\nEND\r\n",
        "VALUE a 0 1\r\nx\r\nSTORED\r\n",
        "VALUE a 0 99999999999999999999999\r\n",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (size_t step = 0; step <= 2; step++) {
            struct mc_rsp r;
            size_t took;
            assert_int_equal(rsp_in_steps(&r, cases[i], strlen(cases[i]), step, &took), MC_ERROR);
            assert_non_null(r.error);
        }
    }
    char longline[MC_RSP_LINE_MAX + 16];
    memset(longline, 'S', sizeof(longline));
    struct mc_rsp r;
    size_t took;
    assert_int_equal(rsp_in_steps(&r, longline, sizeof(longline), 0, &took), MC_ERROR);
    assert_string_equal(r.error, "reply line too long");
    static const char nul[] = "VALUE a\0b 0 1\r\nx\r\nEND\r\n";
    assert_int_equal(rsp_in_steps(&r, nul, sizeof(nul) - 1, 0, &took), MC_ERROR);
    assert_string_equal(r.error, "malformed reply line");
}

/* A VALUE line repeats the key as the client sent it, control bytes and
 * all (only a NUL is refused). */
static void test_reply_keys_with_control_bytes(void **state)
{
    (void)state;
    static const char rsp[] = "VALUE \x10\x10k\ta\x7f 3 1\r\nx\r\nEND\r\n";
    for (size_t step = 0; step <= sizeof(rsp) - 1; step++) {
        struct mc_rsp r;
        size_t took;
        assert_int_equal(rsp_in_steps(&r, rsp, sizeof(rsp) - 1, step, &took), MC_DONE);
        assert_int_equal(took, sizeof(rsp) - 1);
        assert_int_equal(r.values, 1);
    }
    size_t off, len;
    uint64_t bytes;
    assert_int_equal(mc_value_line(rsp, strlen("VALUE \x10\x10k\ta\x7f 3 1"),
                                   &off, &len, &bytes), 0);
    assert_int_equal(off, 6);
    assert_int_equal(len, 6);
    assert_int_equal(bytes, 1);
}

static void test_meta_requests(void **state)
{
    (void)state;
    static const char ms[] = "ms foo 2 T90 q F1\r\nhi\r\nmg bar";
    size_t first = strlen("ms foo 2 T90 q F1\r\nhi\r\n");
    struct mc_req r;
    mc_req_init(&r);
    for (size_t step = 0; step <= sizeof(ms) - 1; step++) {
        size_t took;
        assert_int_equal(req_in_steps(&r, ms, sizeof(ms) - 1, step, &mc_default_limits, &took),
                         MC_DONE);
        assert_int_equal(took, first);
        assert_int_equal(r.kind, MC_META);
        assert_int_equal(r.first_key, 1);
        assert_int_equal(r.nkeys, 1);
        check_tok(&r, ms, 1, "foo");
        assert_true(r.quiet);
        assert_false(r.b64);
        assert_false(r.noreply);
        assert_int_equal(r.size, first);
    }
    static const struct {
        const char *req;
        int kind;
        bool quiet, b64;
    } cases[] = {
        { "mg foo v k O123\r\n", MC_META, false, false },
        { "mg foo\r\n", MC_META, false, false },
        { "mg Zm9v b v q\r\n", MC_META, true, true },
        { "md foo q I\r\n", MC_META, true, false },
        { "ma foo D5 MI N0 v\r\n", MC_META, false, false },
        { "me foo\r\n", MC_META, false, false },
        { "mn\r\n", MC_META_NOOP, false, false },
        { "mn anything\r\n", MC_META_NOOP, false, false },
        /* flags are single letters: "qq" or "bar" are other tokens */
        { "mg q qq bar\r\n", MC_META, false, false },
        { "ms b 1 b\r\nx\r\n", MC_META, false, true },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t took;
        const char *s = cases[i].req;
        assert_int_equal(req_in_steps(&r, s, strlen(s), 1, &mc_default_limits, &took), MC_DONE);
        assert_int_equal(took, strlen(s));
        assert_int_equal(r.kind, cases[i].kind);
        assert_int_equal(r.quiet, cases[i].quiet);
        assert_int_equal(r.b64, cases[i].b64);
        assert_int_equal(r.nkeys, cases[i].kind == MC_META ? 1 : 0);
    }
    /* the key (token 1) of a meta command is not a flag */
    size_t took;
    assert_int_equal(req_in_steps(&r, "mg q v\r\n", 8, 0, &mc_default_limits, &took), MC_DONE);
    assert_false(r.quiet);
    static const char *const bad[] = {
        "mg\r\n", "ms foo\r\n", "ms foo abc\r\nxx\r\n", "ms foo 2\r\nabc\r\n",
        "ms foo 2 T1\r\nhi\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(req_in_steps(&r, bad[i], strlen(bad[i]), 0, &mc_default_limits, &took),
                         MC_ERROR);
    }
    char longkey[300] = "mg ";
    memset(longkey + 3, 'k', 251);
    memcpy(longkey + 254, "\r\n", 3);
    assert_int_equal(req_in_steps(&r, longkey, strlen(longkey), 0, &mc_default_limits, &took),
                     MC_ERROR);
    mc_req_free(&r);
}

static void test_meta_replies_and_until_mn(void **state)
{
    (void)state;
    static const struct {
        const char *rsp;
        bool err;
    } lines[] = {
        { "HD\r\n", false }, { "HD c123 kfoo O9\r\n", false }, { "NS\r\n", false },
        { "EX\r\n", false }, { "NF\r\n", false }, { "EN\r\n", false }, { "MN\r\n", false },
        { "ME foo exp=-1 la=1 cas=4 fetch=no cls=1 size=62\r\n", false },
        { "VA 2 s2 t78 f1\r\nhi\r\n", false }, { "VA 0\r\n\r\n", false },
        { "VA 5 kfoo\r\na\r\nbc\r\n", false },
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        for (size_t step = 0; step < 4; step++) {
            struct mc_rsp r;
            size_t took;
            const char *s = lines[i].rsp;
            assert_int_equal(rsp_in_steps(&r, s, strlen(s), step, &took), MC_DONE);
            assert_int_equal(took, strlen(s));
            assert_int_equal(r.size, strlen(s));
            assert_int_equal(r.tail, 0);
            assert_int_equal(r.values, 0);
        }
    }
    static const char *const bad[] = { "VA\r\n", "VA x\r\n", "VA 2\r\nhix\r\n", "VA 2\r\nhi\n" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct mc_rsp r;
        size_t took;
        assert_int_equal(rsp_in_steps(&r, bad[i], strlen(bad[i]), 0, &took), MC_ERROR);
    }
    /* until_mn: a reply is whatever comes up to its MN, which is the tail */
    static const struct {
        const char *rsp;
        size_t len;     /* of the first reply, MN included */
    } quiet[] = {
        { "MN\r\nHD\r\n", 4 },
        { "VA 2 kfoo\r\nhi\r\nMN\r\nMN\r\n", 19 },
        { "HD\r\nMN\r\n", 8 },
        { "CLIENT_ERROR bad command line format\r\nMN\r\n", 42 },
    };
    for (size_t i = 0; i < sizeof(quiet) / sizeof(quiet[0]); i++) {
        const char *s = quiet[i].rsp;
        for (size_t step = 0; step <= strlen(s); step++) {
            struct mc_rsp r;
            size_t off;
            assert_int_equal(rsp_steps(&r, s, strlen(s), step, true, &off), MC_DONE);
            assert_int_equal(off, quiet[i].len);
            assert_int_equal(r.size, quiet[i].len);
            assert_int_equal(r.tail, 4);
        }
    }
    /* two replies before the MN: the pipeline lost its place */
    struct mc_rsp r;
    size_t used;
    static const char two[] = "HD\r\nHD\r\nMN\r\n";
    assert_int_equal(rsp_steps(&r, two, sizeof(two) - 1, 0, true, &used), MC_ERROR);
}

static void test_base64_keys(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
        size_t len;     /* of out (it may hold NULs) */
    } ok[] = {
        { "", "", 0 }, { "Zg==", "f", 1 }, { "Zm8=", "fo", 2 }, { "Zm9v", "foo", 3 },
        { "a2V5", "key", 3 }, { "Zm9vYmFy", "foobar", 6 }, { "AP8A/w==", "\x00\xff\x00\xff", 4 },
        { "+/+/", "\xfb\xff\xbf", 3 },
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint8_t out[64];
        size_t n = 99;
        assert_int_equal(mc_b64_decode((const uint8_t *)ok[i].in, strlen(ok[i].in), out, &n), 0);
        assert_int_equal(n, ok[i].len);
        assert_memory_equal(out, ok[i].out, ok[i].len);
    }
    static const char *const bad[] = { "Zm9", "Zm9v=", "Z===", "Zm=v", "Zm9*", "=Zm9", "Zm 9v" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t out[64];
        size_t n;
        assert_int_equal(mc_b64_decode((const uint8_t *)bad[i], strlen(bad[i]), out, &n), -1);
    }
}

static void test_value_line(void **state)
{
    (void)state;
    size_t off, len;
    uint64_t bytes;
    static const char v[] = "VALUE some:key 0 5 77";
    assert_int_equal(mc_value_line(v, strlen(v), &off, &len, &bytes), 0);
    assert_int_equal(len, 8);
    assert_memory_equal(v + off, "some:key", 8);
    assert_int_equal(bytes, 5);
    static const char w[] = "VALUE k 1 123";
    assert_int_equal(mc_value_line(w, strlen(w), &off, &len, &bytes), 0);
    assert_int_equal(bytes, 123);
    static const char *const bad[] = { "END", "VALUE ", "VALUE k 0", "VALUE k 0 x",
                                       "VALUES k 0 1", "VALUE k 0 1 2 3" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(mc_value_line(bad[i], strlen(bad[i]), &off, &len, &bytes), -1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_every_split),
        cmocka_unit_test(test_get_many_keys_and_lf_only),
        cmocka_unit_test(test_control_bytes_belong_to_keys),
        cmocka_unit_test(test_keyed_and_noreply),
        cmocka_unit_test(test_malformed_requests),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_replies_every_split),
        cmocka_unit_test(test_malformed_replies),
        cmocka_unit_test(test_reply_keys_with_control_bytes),
        cmocka_unit_test(test_value_line),
        cmocka_unit_test(test_meta_requests),
        cmocka_unit_test(test_meta_replies_and_until_mn),
        cmocka_unit_test(test_base64_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
