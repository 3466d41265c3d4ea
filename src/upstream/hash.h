/* hash: the key hash functions of twemproxy, bit for bit, so a key lands on
 * the same server behind legate as behind nutcracker.
 *
 * twemproxy reads keys through `const char *`, and on x86 `char` is signed:
 * several of its hashes (one_at_a_time, fnv1*, hsieh's tail) sign-extend
 * bytes >= 0x80. These functions reproduce that on purpose. */
#ifndef LEGATE_HASH_H
#define LEGATE_HASH_H

#include "../conf/conf.h"

#include <stddef.h>
#include <stdint.h>

typedef uint32_t (*hash_fn)(const uint8_t *key, size_t len);

/* The function for a configured hash name. */
hash_fn hash_get(enum conf_hash h);

static inline uint32_t hash_key(enum conf_hash h, const uint8_t *key, size_t len)
{
    return hash_get(h)(key, len);
}

#endif
