/* hash: twemproxy-compatible key hashes (see hash.h). Written from the
 * algorithms' definitions; the quirks twemproxy has (sign extension, the
 * 32-bit fnv1a_64, libmemcached's crc32) are reproduced and commented. */
#include "hash.h"
#include "md5.h"

/* A key byte as twemproxy sees it through a signed char, widened. */
static inline uint32_t hash_sext32(uint8_t b)
{
    return (uint32_t)(int32_t)(int8_t)b;
}

static inline uint64_t hash_sext64(uint8_t b)
{
    return (uint64_t)(int64_t)(int8_t)b;
}

static uint32_t hash_one_at_a_time(const uint8_t *key, size_t len)
{
    uint32_t v = 0;
    for (size_t i = 0; i < len; i++) {
        v += hash_sext32(key[i]);
        v += v << 10;
        v ^= v >> 6;
    }
    v += v << 3;
    v ^= v >> 11;
    v += v << 15;
    return v;
}

/* The first four digest bytes, little-endian. */
static uint32_t hash_md5(const uint8_t *key, size_t len)
{
    uint8_t d[16];
    md5_digest(key, len, d);
    return (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
}

/* nutcracker 0.5.0's "crc16": the CRC-16/XMODEM step (polynomial 0x1021,
 * not reflected, initial value 0) applied to a 32-bit accumulator that is
 * never truncated, so the bits shifted past 16 stay in the result.  This is
 * what its binary computes (the table is XMODEM's, the accumulator a
 * uint32_t); it is not a standard CRC-16 and is kept for placement. */
static uint32_t crc16_xmodem_step(uint32_t index)
{
    uint32_t v = (index & 0xffu) << 8;
    for (int b = 0; b < 8; b++) {
        v = (v & 0x8000u) ? ((v << 1) ^ 0x1021u) : (v << 1);
    }
    return v & 0xffffu;
}

static uint32_t hash_crc16(const uint8_t *key, size_t len)
{
    uint32_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc = (crc << 8) ^ crc16_xmodem_step((crc >> 8) ^ key[i]);
    }
    return crc;
}

/* Standard reflected CRC-32 (polynomial 0xEDB88320) before the final
 * inversion. */
static uint32_t hash_crc32_raw(const uint8_t *key, size_t len)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        crc ^= key[i];
        for (int b = 0; b < 8; b++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
        }
    }
    return crc;
}

/* libmemcached's "crc": 15 bits of the CRC-32 (not the CRC-32 itself). */
static uint32_t hash_crc32(const uint8_t *key, size_t len)
{
    return ((~hash_crc32_raw(key, len)) >> 16) & 0x7fff;
}

/* The real CRC-32. */
static uint32_t hash_crc32a(const uint8_t *key, size_t len)
{
    return ~hash_crc32_raw(key, len);
}

enum {
    HASH_FNV32_INIT = 2166136261u,
    HASH_FNV32_PRIME = 16777619u,
};
static const uint64_t hash_fnv64_init = 0xcbf29ce484222325ull;
static const uint64_t hash_fnv64_prime = 0x100000001b3ull;

static uint32_t hash_fnv1_64(const uint8_t *key, size_t len)
{
    uint64_t h = hash_fnv64_init;
    for (size_t i = 0; i < len; i++) {
        h *= hash_fnv64_prime;
        h ^= hash_sext64(key[i]);
    }
    return (uint32_t)h;
}

/* twemproxy's fnv1a_64 runs in 32 bits with the 64-bit constants
 * truncated: not FNV-1a 64, but what its users' keys are placed by. */
static uint32_t hash_fnv1a_64(const uint8_t *key, size_t len)
{
    uint32_t h = (uint32_t)hash_fnv64_init;
    for (size_t i = 0; i < len; i++) {
        h ^= hash_sext32(key[i]);
        h *= (uint32_t)hash_fnv64_prime;
    }
    return h;
}

static uint32_t hash_fnv1_32(const uint8_t *key, size_t len)
{
    uint32_t h = HASH_FNV32_INIT;
    for (size_t i = 0; i < len; i++) {
        h *= HASH_FNV32_PRIME;
        h ^= hash_sext32(key[i]);
    }
    return h;
}

static uint32_t hash_fnv1a_32(const uint8_t *key, size_t len)
{
    uint32_t h = HASH_FNV32_INIT;
    for (size_t i = 0; i < len; i++) {
        h ^= hash_sext32(key[i]);
        h *= HASH_FNV32_PRIME;
    }
    return h;
}

static inline uint32_t hash_le16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

/* Paul Hsieh's SuperFastHash. */
static uint32_t hash_hsieh(const uint8_t *key, size_t len)
{
    if (len == 0) {
        return 0;
    }
    uint32_t h = 0;
    size_t rem = len & 3;
    for (size_t n = len >> 2; n > 0; n--) {
        h += hash_le16(key);
        uint32_t tmp = (hash_le16(key + 2) << 11) ^ h;
        h = (h << 16) ^ tmp;
        key += 4;
        h += h >> 11;
    }
    if (rem == 3) {
        h += hash_le16(key);
        h ^= h << 16;
        h ^= hash_sext32(key[2]) << 18; /* signed, as in twemproxy */
        h += h >> 11;
    } else if (rem == 2) {
        h += hash_le16(key);
        h ^= h << 11;
        h += h >> 17;
    } else if (rem == 1) {
        h += key[0];
        h ^= h << 10;
        h += h >> 1;
    }
    h ^= h << 3;
    h += h >> 5;
    h ^= h << 4;
    h += h >> 17;
    h ^= h << 25;
    h += h >> 6;
    return h;
}

/* MurmurHash2 with libmemcached's seed (0xdeadbeef * length). */
static uint32_t hash_murmur(const uint8_t *key, size_t len)
{
    const uint32_t m = 0x5bd1e995;
    uint32_t h = (0xdeadbeefu * (uint32_t)len) ^ (uint32_t)len;
    while (len >= 4) {
        uint32_t k = (uint32_t)key[0] | (uint32_t)key[1] << 8 | (uint32_t)key[2] << 16 |
                     (uint32_t)key[3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
        key += 4;
        len -= 4;
    }
    switch (len) {
    case 3:
        h ^= (uint32_t)key[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)key[1] << 8;
        /* fall through */
    case 1:
        h ^= key[0];
        h *= m;
        break;
    default:
        break;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

static inline uint32_t hash_rot(uint32_t x, unsigned k)
{
    return (x << k) | (x >> (32 - k));
}

/* Bob Jenkins' lookup3 hashlittle, initval 13, read byte by byte (equal to
 * the word-at-a-time reads on little-endian machines). */
static uint32_t hash_jenkins(const uint8_t *key, size_t len)
{
    uint32_t a, b, c;
    a = b = c = 0xdeadbeefu + (uint32_t)len + 13u;
    if (len == 0) {
        return c;
    }
    while (len > 12) {
        a += (uint32_t)key[0] | (uint32_t)key[1] << 8 | (uint32_t)key[2] << 16 |
             (uint32_t)key[3] << 24;
        b += (uint32_t)key[4] | (uint32_t)key[5] << 8 | (uint32_t)key[6] << 16 |
             (uint32_t)key[7] << 24;
        c += (uint32_t)key[8] | (uint32_t)key[9] << 8 | (uint32_t)key[10] << 16 |
             (uint32_t)key[11] << 24;
        a -= c; a ^= hash_rot(c, 4);  c += b;
        b -= a; b ^= hash_rot(a, 6);  a += c;
        c -= b; c ^= hash_rot(b, 8);  b += a;
        a -= c; a ^= hash_rot(c, 16); c += b;
        b -= a; b ^= hash_rot(a, 19); a += c;
        c -= b; c ^= hash_rot(b, 4);  b += a;
        len -= 12;
        key += 12;
    }
    /* The last 1..12 bytes, each into its lane of a, b or c. */
    uint32_t *lane[3] = { &a, &b, &c };
    for (size_t i = 0; i < len; i++) {
        *lane[i / 4] += (uint32_t)key[i] << (8 * (i % 4));
    }
    c ^= b; c -= hash_rot(b, 14);
    a ^= c; a -= hash_rot(c, 11);
    b ^= a; b -= hash_rot(a, 25);
    c ^= b; c -= hash_rot(b, 16);
    a ^= c; a -= hash_rot(c, 4);
    b ^= a; b -= hash_rot(a, 14);
    c ^= b; c -= hash_rot(b, 24);
    return c;
}

/* Indexed by enum conf_hash. */
static const hash_fn hash_table[] = {
    [CONF_HASH_ONE_AT_A_TIME] = hash_one_at_a_time,
    [CONF_HASH_MD5] = hash_md5,
    [CONF_HASH_CRC16] = hash_crc16,
    [CONF_HASH_CRC32] = hash_crc32,
    [CONF_HASH_CRC32A] = hash_crc32a,
    [CONF_HASH_FNV1_64] = hash_fnv1_64,
    [CONF_HASH_FNV1A_64] = hash_fnv1a_64,
    [CONF_HASH_FNV1_32] = hash_fnv1_32,
    [CONF_HASH_FNV1A_32] = hash_fnv1a_32,
    [CONF_HASH_HSIEH] = hash_hsieh,
    [CONF_HASH_MURMUR] = hash_murmur,
    [CONF_HASH_JENKINS] = hash_jenkins,
};

hash_fn hash_get(enum conf_hash h)
{
    return hash_table[h];
}
