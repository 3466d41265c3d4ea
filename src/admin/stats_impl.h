/* stats_impl: what the stats renderers share (stats.c writes nutcracker's
 * JSON, stats_prom.c Prometheus' text): the field tables, which extra
 * counters a pool shows, a growable string and a sum over workers.
 * Private to src/admin. */
#ifndef LEGATE_STATS_IMPL_H
#define LEGATE_STATS_IMPL_H

#include "stats.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One counter: its name (nutcracker's where it has one), `-D`'s text, and
 * whether it is a gauge (a level that goes up and down) or a counter. */
struct stats_field {
    const char *name;
    const char *desc;
    bool gauge;
};

extern const struct stats_field stats_pool_fields[SP_N];
extern const struct stats_field stats_server_fields[SS_N];
extern const struct stats_field stats_extra_fields[SX_N];
extern const struct stats_field stats_arm_fields[SA_N];

/* Extra counters appear in pools nutcracker has no equivalent of (tcp,
 * http), and `rejected` wherever a limit is set. */
bool stats_extra_shown(const struct conf_pool *cp, enum stats_pool_extra f);

/* A growable string; `failed` is set once memory ran out (later puts do
 * nothing). */
struct stats_buf {
    char *p;
    size_t len;
    size_t cap;
    int failed;
};

void stats_put(struct stats_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Which arm of http pool `cp` slot s serves: an arm index, CONF_DISC_MIRROR,
 * or CONF_DISC_POOL (not an http split). */
int stats_slot_owner(const struct conf_pool *cp, size_t s);

/* The sum of n cells (one per worker). */
int64_t stats_sum(stats_ctr *const *cells, size_t n);

#endif
