/* ring: key -> server placement compatible with twemproxy (see ring.h). */
#include "ring.h"
#include "hash.h"
#include "md5.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { RING_POINTS_PER_DIGEST = 4, RING_IDENT_MAX = 85 };

static int ring_point_cmp(const void *a, const void *b)
{
    uint32_t x = ((const struct ring_point *)a)->value;
    uint32_t y = ((const struct ring_point *)b)->value;
    return x < y ? -1 : x > y;
}

/* Ketama points a server gets: its share of 160 points per live server,
 * rounded down to a multiple of 4. The float arithmetic, and the tiny
 * double added before flooring, are twemproxy's to the bit. */
static uint32_t ring_ketama_share(unsigned weight, uint32_t total_weight, uint32_t nlive)
{
    float pct = (float)weight / (float)total_weight;
    float per4 = pct * (float)RING_KETAMA_POINTS / 4.0f * (float)nlive;
    double nudged = (double)per4 + 0.0000000001;
    return (uint32_t)(floorf((float)nudged) * 4.0f);
}

static int ring_build_ketama(struct ring *r, const struct conf_server *servers, size_t n,
                             const bool *live, uint32_t nlive, uint32_t total_weight)
{
    size_t cap = 0;
    for (size_t i = 0; i < n; i++) {
        if (live == NULL || live[i]) {
            cap += ring_ketama_share(servers[i].weight, total_weight, nlive);
        }
    }
    r->points = malloc((cap ? cap : 1) * sizeof(*r->points));
    if (r->points == NULL) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (live != NULL && !live[i]) {
            continue;
        }
        uint32_t share = ring_ketama_share(servers[i].weight, total_weight, nlive);
        for (uint32_t k = 0; k < share / RING_POINTS_PER_DIGEST; k++) {
            char host[RING_IDENT_MAX + 1];
            int len = snprintf(host, sizeof(host), "%s-%u", servers[i].ident, k);
            size_t hlen = len < 0 ? 0 : (size_t)len > RING_IDENT_MAX ? RING_IDENT_MAX : (size_t)len;
            uint8_t d[16];
            md5_digest(host, hlen, d);
            for (size_t x = 0; x < RING_POINTS_PER_DIGEST; x++) {
                const uint8_t *q = d + 4 * x;
                r->points[r->npoints].value = (uint32_t)q[0] | (uint32_t)q[1] << 8 |
                                              (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
                r->points[r->npoints].server = (uint32_t)i;
                r->npoints++;
            }
        }
    }
    qsort(r->points, r->npoints, sizeof(*r->points), ring_point_cmp);
    size_t i = 0;
    for (uint32_t b = 0; b <= (1u << RING_BUCKET_BITS); b++) {
        uint64_t floor = (uint64_t)b << (32 - RING_BUCKET_BITS);
        while (i < r->npoints && r->points[i].value < floor) {
            i++;
        }
        r->bucket[b] = (uint32_t)i;
    }
    return 0;
}

/* twemproxy sorts a pool's servers by name while validating its config
 * (shorter names first, then bytewise), and modula walks them in that
 * order. */
static int ring_ident_cmp(const char *a, const char *b)
{
    a = a != NULL ? a : ""; /* an empty slot of the table */
    b = b != NULL ? b : "";
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb) {
        return la < lb ? -1 : 1;
    }
    return memcmp(a, b, la);
}

/* modula and random: each live server once per unit of weight, servers in
 * twemproxy's (name-sorted) order. */
static int ring_build_weighted_list(struct ring *r, const struct conf_server *servers, size_t n,
                                    const bool *live, uint32_t total_weight)
{
    size_t *order = malloc(n * sizeof(*order));
    r->points = malloc((total_weight ? total_weight : 1) * sizeof(*r->points));
    if (order == NULL || r->points == NULL) {
        free(order);
        return -1;
    }
    for (size_t i = 0; i < n; i++) { /* insertion sort: config-sized */
        size_t j = i;
        while (j > 0 && ring_ident_cmp(servers[order[j - 1]].ident, servers[i].ident) > 0) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    for (size_t k = 0; k < n; k++) {
        size_t i = order[k];
        if (live != NULL && !live[i]) {
            continue;
        }
        for (unsigned w = 0; w < servers[i].weight; w++) {
            r->points[r->npoints].value = 0;
            r->points[r->npoints].server = (uint32_t)i;
            r->npoints++;
        }
    }
    free(order);
    return 0;
}

int ring_build_servers(struct ring *r, const struct conf_pool *cp,
                       const struct conf_server *servers, size_t n, const bool *live)
{
    memset(r, 0, sizeof(*r));
    r->dist = cp->distribution;
    r->hash = cp->hash;
    r->has_tag = cp->has_hash_tag;
    memcpy(r->tag, cp->hash_tag, 2);
    r->nservers = n;
    uint32_t nlive = 0, total_weight = 0;
    for (size_t i = 0; i < n; i++) {
        if (live == NULL || live[i]) {
            nlive++;
            total_weight += servers[i].weight;
        }
    }
    if (nlive == 0) {
        return 0;
    }
    if (r->dist == CONF_DIST_KETAMA) {
        return ring_build_ketama(r, servers, n, live, nlive, total_weight);
    }
    return ring_build_weighted_list(r, servers, n, live, total_weight);
}

void ring_free(struct ring *r)
{
    free(r->points);
    r->points = NULL;
    r->npoints = 0;
}

void ring_key_span(const struct ring *r, const uint8_t *key, size_t len,
                   const uint8_t **out, size_t *outlen)
{
    *out = key;
    *outlen = len;
    if (!r->has_tag) {
        return;
    }
    const uint8_t *start = memchr(key, r->tag[0], len);
    if (start == NULL) {
        return;
    }
    const uint8_t *end = memchr(start + 1, r->tag[1], (size_t)(key + len - (start + 1)));
    if (end != NULL && end - start > 1) {
        *out = start + 1;
        *outlen = (size_t)(end - start - 1);
    }
}

/* The first point at or after `hash`, wrapping to the first point. */
static uint32_t ring_ketama_find(const struct ring *r, uint32_t hash)
{
    uint32_t b = hash >> (32 - RING_BUCKET_BITS);
    size_t lo = r->bucket[b], hi = r->bucket[b + 1];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->points[mid].value < hash) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return r->points[lo == r->npoints ? 0 : lo].server;
}

int ring_pick(const struct ring *r, const uint8_t *key, size_t len, uint64_t rnd)
{
    if (r->npoints == 0) {
        return -1;
    }
    if (r->nservers == 1) {
        return 0; /* as twemproxy: one server, no hashing */
    }
    if (r->dist == CONF_DIST_RANDOM) {
        return (int)r->points[rnd % r->npoints].server;
    }
    const uint8_t *k;
    size_t klen;
    ring_key_span(r, key, len, &k, &klen);
    uint32_t h = klen == 0 ? 0 : hash_key(r->hash, k, klen);
    if (r->dist == CONF_DIST_KETAMA) {
        return (int)ring_ketama_find(r, h);
    }
    return (int)r->points[h % r->npoints].server;
}

int ring_build(struct ring *r, const struct conf_pool *cp, const bool *live)
{
    return ring_build_servers(r, cp, cp->servers, cp->nservers, live);
}
