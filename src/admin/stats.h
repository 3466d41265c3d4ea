/* stats: nutcracker's counters, per worker, summed on read.
 *
 * Each worker owns a `struct stats` and is its only writer; counters are
 * atomics updated with relaxed single-writer stores (no locked
 * instruction on the hot path) so the reader (main's stats listener) may
 * load them at any time. Field names and meanings are nutcracker's; the
 * tables below drive both the JSON and `legate -D`. */
#ifndef LEGATE_STATS_H
#define LEGATE_STATS_H

#include "../conf/conf.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef _Atomic int64_t stats_ctr;

enum stats_pool_field {
    SP_CLIENT_EOF,
    SP_CLIENT_ERR,
    SP_CLIENT_CONNECTIONS,
    SP_SERVER_EJECTS,
    SP_FORWARD_ERROR,
    SP_FRAGMENTS,
    SP_N,
};

enum stats_server_field {
    SS_SERVER_EOF,
    SS_SERVER_ERR,
    SS_SERVER_TIMEDOUT,
    SS_SERVER_CONNECTIONS,
    SS_SERVER_EJECTED_AT,
    SS_REQUESTS,
    SS_REQUEST_BYTES,
    SS_RESPONSES,
    SS_RESPONSE_BYTES,
    SS_IN_QUEUE,
    SS_IN_QUEUE_BYTES,
    SS_OUT_QUEUE,
    SS_OUT_QUEUE_BYTES,
    SS_N,
};

/* legate's own pool counters, beside nutcracker's (shown where they apply:
 * see stats.c, so nutcracker-compatible pools keep nutcracker's fields). */
enum stats_pool_extra {
    SX_RETRIES,         /* retries sent (tcp, http) */
    SX_RETRIES_DENIED,  /* retries the budget refused */
    SX_REJECTED,        /* turned away by max_connections or max_pending */
    SX_N,
};

/* http: per arm of a split (and the mirror, as the last row). */
enum stats_arm_field {
    SA_REQUESTS,
    SA_RESPONSES_1XX,
    SA_RESPONSES_2XX,
    SA_RESPONSES_3XX,
    SA_RESPONSES_4XX,
    SA_RESPONSES_5XX,
    SA_UPSTREAM_ERRORS,
    SA_TIMEOUTS,
    SA_DROPPED,
    SA_N,
};

/* Latency histogram: exact below 16 us, then 8 buckets per power of two
 * (12.5% wide), up to 2^40 us. */
enum { STATS_LAT_BUCKETS = 16 + 37 * 8 };

struct stats_pool {
    stats_ctr f[SP_N];
    stats_ctr x[SX_N];
    stats_ctr *servers;   /* nservers rows of SS_N */
    stats_ctr *latency;   /* nservers rows of STATS_LAT_BUCKETS */
    stats_ctr *latency_us; /* nservers sums of the latencies counted, in us */
    size_t nservers;
    stats_ctr *arms;      /* http: narms rows of SA_N (arms, then the mirror) */
    stats_ctr *arm_latency; /* narms rows of STATS_LAT_BUCKETS */
    stats_ctr *arm_latency_us; /* narms sums, in us */
    size_t narms;
};

struct stats {
    stats_ctr total_connections;
    stats_ctr curr_connections;
    struct stats_pool *pools;
    size_t npools;
};

/* Add `d` (may be negative, for gauges). Only the owning worker calls it. */
static inline void stats_add(stats_ctr *c, int64_t d)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

/* Set a value (timestamps). Only the owning worker calls it. */
static inline void stats_set(stats_ctr *c, int64_t v)
{
    atomic_store_explicit(c, v, memory_order_relaxed);
}

static inline stats_ctr *stats_server(struct stats_pool *p, size_t server,
                                      enum stats_server_field f)
{
    return &p->servers[server * SS_N + f];
}

/* The bucket of a latency in microseconds. */
static inline unsigned stats_lat_bucket(uint64_t us)
{
    if (us < 16) {
        return (unsigned)us;
    }
    unsigned exp = 63u - (unsigned)__builtin_clzll(us); /* >= 4 */
    if (exp > 40) {
        return STATS_LAT_BUCKETS - 1;
    }
    return 16u + (exp - 4u) * 8u + (unsigned)((us >> (exp - 3u)) & 7u);
}

/* The largest latency a bucket holds (its upper bound), in microseconds. */
uint64_t stats_lat_bound(unsigned bucket);

/* Count one reply from `server` that took `us` microseconds. */
static inline void stats_latency(struct stats_pool *p, size_t server, uint64_t us)
{
    stats_add(&p->latency[server * STATS_LAT_BUCKETS + stats_lat_bucket(us)], 1);
    stats_add(&p->latency_us[server], (int64_t)us);
}

static inline stats_ctr *stats_arm(struct stats_pool *p, size_t arm, enum stats_arm_field f)
{
    return &p->arms[arm * SA_N + f];
}

/* Count one response of arm `arm` that took `us` microseconds. */
static inline void stats_arm_latency(struct stats_pool *p, size_t arm, uint64_t us)
{
    stats_add(&p->arm_latency[arm * STATS_LAT_BUCKETS + stats_lat_bucket(us)], 1);
    stats_add(&p->arm_latency_us[arm], (int64_t)us);
}

/* Zeroed counters for every pool and server of `cf`. Returns 0 or -1. */
int stats_init(struct stats *s, const struct conf *cf);
void stats_free(struct stats *s);

struct server_table;

/* nutcracker's JSON for all workers' counters, into a malloc'd string;
 * tabs[i]: pool i's servers (main's thread: the only writer of them).
 * Returns its length, or -1 when out of memory. */
long stats_json(char **out, const struct conf *cf, const struct server_table *const *tabs,
                struct stats *const *workers, size_t nworkers, int64_t started,
                const char *source);

/* The same counters in Prometheus' text format (version 0.0.4), into a
 * malloc'd string: every nutcracker field and legate's own, labelled by
 * pool, server and arm, and the latency histograms with power-of-two
 * bounds (see stats_prom.c). Returns its length, or -1 when out of memory. */
long stats_prometheus(char **out, const struct conf *cf, const struct server_table *const *tabs,
                      struct stats *const *workers, size_t nworkers, int64_t started);

/* The description of every field, as `nutcracker -D` prints it. */
void stats_describe(FILE *f);

#endif
