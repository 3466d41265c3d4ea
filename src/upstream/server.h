/* server: the servers of one pool as every worker sees them — a table of
 * slots with stable indexes: the configured servers first (always there),
 * then `max_endpoints` slots that discovery fills and empties.
 *
 * Threads: main's thread is the only writer (discovery, health checks). A
 * slot's address, weight and names are written only while it is FREE, and
 * a slot becomes FREE again only when every worker has applied its removal
 * (acked[w] >= removed_at) and no connection of any worker uses it
 * (users == 0). Workers read a slot's data only while it is ACTIVE or
 * DRAINING in the version they applied, or while they hold a use of it.
 * After changing state/down main bumps `version` (release) and pokes the
 * workers; a worker applies a version with pool_sync and then stores it in
 * acked[its id] (release). */
#ifndef LEGATE_SERVER_H
#define LEGATE_SERVER_H

#include "../conf/conf.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum server_state { SERVER_FREE, SERVER_ACTIVE, SERVER_DRAINING };

struct server_table {
    struct conf_server *servers; /* nslots; static ones share the config's strings */
    size_t nslots;
    size_t nstatic;
    atomic_uchar *state;        /* enum server_state */
    atomic_bool *down;          /* taken out by health checks */
    atomic_uint *users;         /* connections of any worker using the slot */
    atomic_ulong *acked;        /* per worker: the version it applied */
    unsigned nworkers;
    atomic_uint *gen;           /* bumped each time a slot is filled */
    atomic_ulong version;
    /* main's thread only */
    unsigned long *removed_at;  /* the version that made the slot DRAINING */
    size_t ndraining;
    uint64_t disc_updates;      /* discovery results applied */
    uint64_t disc_failures;     /* failed lookups (the last good set kept) */
};

/* A discovered endpoint. */
struct server_ep {
    struct net_addr addr;
    unsigned weight;
    char ident[NET_ADDR_STRLEN]; /* its ketama identity ("" : "ip:port") */
};

/* What one apply changed. */
struct server_change {
    size_t added;
    size_t removed;
    size_t kept;
    size_t refused;             /* no free slot (max_endpoints) */
};

/* Slots of pool `cp` (static servers + every discovery's max_endpoints). */
size_t server_slots(const struct conf_pool *cp);

/* Set up the table of `cp` for `nworkers`. Returns 0, or -1 when out of
 * memory. */
int server_table_init(struct server_table *t, const struct conf_pool *cp, unsigned nworkers);
void server_table_free(struct server_table *t);

/* main: the endpoints a discovery found are now eps[0, n); its slots are
 * [first, first + count). Slots of endpoints no longer there start
 * draining, new ones take free slots (same address and weight as a
 * draining slot: it is taken back), the same endpoint twice counts once.
 * Other slots are never touched. Bumps the version when anything changed;
 * the caller pokes the workers. */
void server_table_apply(struct server_table *t, size_t first, size_t count,
                        const struct server_ep *eps, size_t n, struct server_change *out);

/* main: free the draining slots nobody uses any more. Returns how many are
 * still draining. */
size_t server_table_reclaim(struct server_table *t);

/* main: bump the version (after a health verdict, say). */
void server_table_publish(struct server_table *t);

static inline enum server_state server_state_of(const struct server_table *t, size_t i)
{
    return (enum server_state)atomic_load_explicit(&t->state[i], memory_order_relaxed);
}

#endif
