/* ring: which server of a sharded pool owns a key, exactly as twemproxy
 * decides: hash_tag extraction, the key hash, then the distribution —
 * ketama (160 points per server scaled by weight, 4 per MD5 digest of
 * "ident-N"), modula (hash mod the weighted server list) or random.
 *
 * A ring is built from a config pool and a liveness mask and never
 * changes; rebuild it when servers are ejected or return. */
#ifndef LEGATE_RING_H
#define LEGATE_RING_H

#include "../conf/conf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    RING_KETAMA_POINTS = 160,
    RING_BUCKET_BITS = 10, /* ketama lookup index: top bits of the hash */
};

struct ring_point {
    uint32_t value;
    uint32_t server;
};

struct ring {
    enum conf_dist dist;
    enum conf_hash hash;
    bool has_tag;
    uint8_t tag[2];
    size_t nservers;          /* configured, live or not */
    struct ring_point *points;
    size_t npoints;           /* 0: no live server */
    /* ketama: bucket[b] is the first point whose value's top bits are >= b,
     * so a lookup searches only bucket[b]..bucket[b + 1]. */
    uint32_t bucket[(1u << RING_BUCKET_BITS) + 1];
};

/* Build the ring of `cp`; `live[i]` false leaves server i out (NULL: all
 * live). Returns 0, or -1 when out of memory. */
int ring_build(struct ring *r, const struct conf_pool *cp, const bool *live);
/* The same over servers[0, n) (a pool's slot table) with cp's hashing. */
int ring_build_servers(struct ring *r, const struct conf_pool *cp,
                       const struct conf_server *servers, size_t n, const bool *live);

void ring_free(struct ring *r);

/* The part of `key` that is hashed: the text between the first tag[0] and
 * the next tag[1] when both exist with something between them, else the
 * whole key. */
void ring_key_span(const struct ring *r, const uint8_t *key, size_t len,
                   const uint8_t **out, size_t *outlen);

/* The server index for `key`, or -1 when no server is live. `rnd` is a
 * random number, used only by the random distribution. */
int ring_pick(const struct ring *r, const uint8_t *key, size_t len, uint64_t rnd);

/* Whether ring_pick uses its `rnd` (so callers draw one only then). */
static inline bool ring_uses_random(const struct ring *r)
{
    return r->dist == CONF_DIST_RANDOM;
}

#endif
