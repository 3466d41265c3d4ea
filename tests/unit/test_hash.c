/* Unit tests for md5, hash and ring: published test vectors, twemproxy's
 * quirks (sign extension, libmemcached's crc32), and ring properties.
 * Placement against a real nutcracker is tests/integration/test_placement.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "conf/conf_value.h"
#include "upstream/hash.h"
#include "upstream/md5.h"
#include "upstream/ring.h"

#include <stdio.h>
#include <string.h>

static uint32_t h(enum conf_hash which, const char *s)
{
    return hash_key(which, (const uint8_t *)s, strlen(s));
}

static void test_md5_vectors(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *hex;
    } v[] = {
        { "", "d41d8cd98f00b204e9800998ecf8427e" },
        { "abc", "900150983cd24fb0d6963f7d28e17f72" },
        { "message digest", "f96b697d7cb7938d525a2f31aaf161d0" },
        { "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
          "57edf4a22be3c955ac49da2e2107b67a" }, /* spans two blocks */
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        uint8_t d[16];
        char hex[33];
        md5_digest(v[i].in, strlen(v[i].in), d);
        for (int k = 0; k < 16; k++) {
            snprintf(hex + 2 * k, 3, "%02x", d[k]);
        }
        assert_string_equal(hex, v[i].hex);
    }
}

static void test_hash_vectors(void **state)
{
    (void)state;
    assert_int_equal(h(CONF_HASH_CRC32A, "123456789"), 0xCBF43926);   /* CRC-32 check */
    assert_int_equal(h(CONF_HASH_CRC32, "123456789"), 0x4BF4);        /* libmemcached: 15 bits */
    /* nutcracker's crc16: the low 16 bits are the CRC-16/XMODEM check value
     * 0x31C3; the high bits are what its untruncated accumulator keeps. */
    assert_int_equal(h(CONF_HASH_CRC16, "123456789"), 0x869031C3);
    assert_int_equal(h(CONF_HASH_FNV1_32, "a"), 0x050c5d7e);
    assert_int_equal(h(CONF_HASH_FNV1A_32, "a"), 0xe40c292c);
    assert_int_equal(h(CONF_HASH_FNV1_64, "a"), 0x8601b7be);          /* low half of FNV-1 64 */
    assert_int_equal(h(CONF_HASH_FNV1A_64, "hello"), 0x80aabd0b);     /* twemproxy's 32-bit variant */
    assert_int_equal(h(CONF_HASH_ONE_AT_A_TIME, "a"), 0xca2e9442);
    assert_int_equal(h(CONF_HASH_MD5, ""), 0xd98c1dd4);
    assert_int_equal(h(CONF_HASH_HSIEH, ""), 0);
}

static void test_high_bytes_are_sign_extended(void **state)
{
    (void)state;
    /* twemproxy reads keys as signed char: 0xff is 0xffffffff to fnv1a_32 */
    const uint8_t ff = 0xff;
    assert_int_equal(hash_key(CONF_HASH_FNV1A_32, &ff, 1), 0xf9f3a14e);
}

static void test_every_hash_spreads_keys(void **state)
{
    (void)state;
    for (int which = CONF_HASH_ONE_AT_A_TIME; which <= CONF_HASH_JENKINS; which++) {
        uint32_t seen[64];
        size_t distinct = 0;
        for (int i = 0; i < 64; i++) {
            char key[32];
            snprintf(key, sizeof(key), "key:%d", i);
            uint32_t v = h((enum conf_hash)which, key);
            size_t j = 0;
            while (j < distinct && seen[j] != v) {
                j++;
            }
            if (j == distinct) {
                seen[distinct++] = v;
            }
        }
        assert_true(distinct >= 60); /* crc32 has 15 bits: a few collisions at most */
    }
}

static struct conf_pool ring_pool(struct conf_server *s, const char *const *lines, size_t n,
                                  enum conf_dist dist)
{
    struct conf_pool cp;
    memset(&cp, 0, sizeof(cp));
    for (size_t i = 0; i < n; i++) {
        char buf[256];
        const char *why;
        assert_int_equal(conf_value_server(lines[i], &s[i], buf, sizeof(buf), &why), 0);
    }
    cp.servers = s;
    cp.nservers = n;
    cp.distribution = dist;
    cp.hash = CONF_HASH_FNV1A_64;
    return cp;
}

static void test_ketama_points_and_weights(void **state)
{
    (void)state;
    static const char *const lines[] = { "10.0.0.1:6379:1", "10.0.0.2:6379:1",
                                         "10.0.0.3:6379:2" };
    struct conf_server s[3];
    struct conf_pool cp = ring_pool(s, lines, 3, CONF_DIST_KETAMA);
    struct ring r;
    assert_int_equal(ring_build(&r, &cp, NULL), 0);
    /* 160 points per server scaled by weight: 120 + 120 + 240 */
    assert_int_equal(r.npoints, 480);
    for (size_t i = 1; i < r.npoints; i++) {
        assert_true(r.points[i - 1].value <= r.points[i].value);
    }
    int count[3] = { 0 };
    for (int i = 0; i < 30000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "user:%d", i);
        count[ring_pick(&r, (const uint8_t *)key, strlen(key), 0)]++;
    }
    assert_in_range(count[2], 12000, 18000); /* about half */
    /* With equal weights a dead server's keys move and the others' stay.
     * (With unequal weights twemproxy recomputes every share, so some keys
     * move between the survivors too; legate does the same.) */
    static const char *const equal[] = { "10.0.0.1:6379:1", "10.0.0.2:6379:1",
                                         "10.0.0.3:6379:1" };
    struct conf_server se[3];
    struct conf_pool cpe = ring_pool(se, equal, 3, CONF_DIST_KETAMA);
    ring_free(&r);
    assert_int_equal(ring_build(&r, &cpe, NULL), 0);
    bool live[3] = { true, false, true };
    struct ring r2;
    assert_int_equal(ring_build(&r2, &cpe, live), 0);
    for (int i = 0; i < 2000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "user:%d", i);
        int a = ring_pick(&r, (const uint8_t *)key, strlen(key), 0);
        int b = ring_pick(&r2, (const uint8_t *)key, strlen(key), 0);
        assert_int_not_equal(b, 1);
        if (a != 1) {
            assert_int_equal(a, b);
        }
    }
    bool none[3] = { false, false, false };
    struct ring r3;
    assert_int_equal(ring_build(&r3, &cp, none), 0);
    assert_int_equal(ring_pick(&r3, (const uint8_t *)"k", 1, 0), -1);
    ring_free(&r);
    ring_free(&r2);
    ring_free(&r3);
    for (int i = 0; i < 3; i++) {
        conf_server_clear(&s[i]);
        conf_server_clear(&se[i]);
    }
}

static void test_ident_and_hash_tag(void **state)
{
    (void)state;
    static const char *const lines[] = { "localhost:11211:1", "127.0.0.1:6380:1 shard-x",
                                         "/tmp/c.sock:1" };
    struct conf_server s[3];
    struct conf_pool cp = ring_pool(s, lines, 3, CONF_DIST_MODULA);
    (void)cp;
    assert_string_equal(s[0].ident, "localhost");      /* port 11211 dropped */
    assert_string_equal(s[1].ident, "shard-x");      /* a name wins */
    assert_string_equal(s[2].ident, "/tmp/c.sock");
    cp.has_hash_tag = true;
    memcpy(cp.hash_tag, "{}", 2);
    struct ring r;
    assert_int_equal(ring_build(&r, &cp, NULL), 0);
    const uint8_t *k;
    size_t n;
    ring_key_span(&r, (const uint8_t *)"a{user1}b", 9, &k, &n);
    assert_int_equal(n, 5);
    assert_memory_equal(k, "user1", 5);
    ring_key_span(&r, (const uint8_t *)"a{}b", 4, &k, &n); /* empty tag: whole key */
    assert_int_equal(n, 4);
    ring_key_span(&r, (const uint8_t *)"a{b", 3, &k, &n);  /* unclosed: whole key */
    assert_int_equal(n, 3);
    /* keys with the same tag land together */
    assert_int_equal(ring_pick(&r, (const uint8_t *)"{u1}:a", 6, 0),
                     ring_pick(&r, (const uint8_t *)"{u1}:zzzz", 9, 0));
    ring_free(&r);
    for (int i = 0; i < 3; i++) {
        conf_server_clear(&s[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_md5_vectors),
        cmocka_unit_test(test_hash_vectors),
        cmocka_unit_test(test_high_bytes_are_sign_extended),
        cmocka_unit_test(test_every_hash_spreads_keys),
        cmocka_unit_test(test_ketama_points_and_weights),
        cmocka_unit_test(test_ident_and_hash_tag),
    };
    return cmocka_run_group_tests_name("hash", tests, NULL, NULL);
}
