/* pool: one configured pool inside one worker: its listener, its balancer
 * state, and the hand-off of accepted clients to the pool's protocol.
 *
 * pool_shared is the per-process part, built by main before workers start
 * (so a bind error stops legate before anything runs): the listening
 * sockets, the counters the limits use (`client_connections`,
 * `max_connections`, `max_pending`) and the server table (server.h). */
#ifndef LEGATE_POOL_H
#define LEGATE_POOL_H

#include "../admin/stats.h"
#include "../conf/conf.h"
#include "../core/acceptor.h"
#include "../core/ev.h"
#include "../core/log.h"
#include "bal.h"
#include "budget.h"
#include "handoff.h"
#include "server.h"

#include <stdatomic.h>
#include <stdbool.h>

struct wk;

struct pool_shared {
    atomic_uint clients;  /* open client connections, all workers */
    atomic_uint unix_users; /* workers still accepting on the unix socket */
    int *lfds;            /* tcp: one SO_REUSEPORT socket per worker */
    size_t nlfds;         /* unix: one socket shared by all workers */
    bool is_unix;
    atomic_bool handed_over; /* a newer generation listens on the same unix path:
                              * the last worker closes its socket but keeps the file */
    struct server_table tab; /* the servers, static and discovered (server.h) */
    atomic_uint up_conns; /* upstream connections of all workers (max_connections) */
    atomic_uint pending;  /* requests in flight, all workers (max_pending) */
    struct handoff_box box; /* clients handed over at a reload (handoff.h) */
};

struct pool {
    const struct conf_pool *cp;
    struct wk *wk;
    struct pool_shared *shared;
    struct acceptor acc;    /* this worker's listener */
    bool listening;         /* false once draining */
    struct bal bal;
    void *proto;            /* the protocol's per-worker state, if any */
    struct stats_pool *stats; /* this worker's counters for the pool */
    /* The servers as this worker last applied them (pool_sync): */
    const struct conf_server *servers; /* shared->tab.servers */
    size_t nslots;
    unsigned long seen;     /* the table version applied */
    uint8_t *state;         /* enum server_state per slot */
    unsigned *gen;          /* per slot: the fill it belongs to */
    bool *down;             /* per slot: held out by health checks */
    struct budget budget;   /* retries of this worker (budget.h) */
    struct pool_outlier *outlier; /* per slot (outlier_detection), NULL when off */
    size_t nejected;
    struct log_limit *server_log; /* per slot: pool_server_warn's rate limit */
    struct log_limit pool_log;    /* pool_warn's rate limit */
};

/* Passive outlier ejection of one server in one worker. */
struct pool_outlier {
    struct pool *p;
    size_t server;
    unsigned fails;         /* in a row */
    unsigned ejections;     /* in a row (each doubles the time), reset by a success */
    bool ejected;
    struct ev_timer back;   /* the ejection ends */
};

/* A place under `max` in a process-wide count, or false when full. */
static inline bool pool_limit_take(atomic_uint *count, unsigned max)
{
    if (atomic_fetch_add_explicit(count, 1, memory_order_relaxed) >= max) {
        atomic_fetch_sub_explicit(count, 1, memory_order_relaxed);
        return false;
    }
    return true;
}

/* max_pending: take a place for one request (or tcp connect) in flight, or
 * return false (the caller answers "busy"); give it back with
 * pool_pending_end. max_connections: the same for one upstream
 * connection (pool_conn_begin/end). No-ops without the limit. */
static inline bool pool_pending_begin(struct pool *p)
{
    return p->cp->max_pending == 0 || pool_limit_take(&p->shared->pending, p->cp->max_pending);
}

static inline void pool_pending_end(struct pool *p)
{
    if (p->cp->max_pending != 0) {
        atomic_fetch_sub_explicit(&p->shared->pending, 1, memory_order_relaxed);
    }
}

static inline bool pool_conn_begin(struct pool *p)
{
    return p->cp->max_connections == 0 ||
           pool_limit_take(&p->shared->up_conns, p->cp->max_connections);
}

static inline void pool_conn_end(struct pool *p)
{
    if (p->cp->max_connections != 0) {
        atomic_fetch_sub_explicit(&p->shared->up_conns, 1, memory_order_relaxed);
    }
}

/* Server `i` may take new requests in this worker. */
static inline bool pool_server_usable(const struct pool *p, size_t i)
{
    return p->state[i] == SERVER_ACTIVE && !p->down[i] &&
           (p->outlier == NULL || !p->outlier[i].ejected);
}

/* Open the listening sockets of `cp` for `nworkers`, with a handoff box
 * under `hub`. Returns 0, or -1 with a message in err. `sh` starts zeroed. */
int pool_shared_open(struct pool_shared *sh, const struct conf *cf,
                     const struct conf_pool *cp, unsigned nworkers, struct handoff_hub *hub,
                     char *err, size_t errlen);

/* The same for a reload: when `prev` (a pool of the running generation,
 * or NULL) listens on the same address, its sockets are shared (dup) rather
 * than opened anew, so no client is refused while the generations change;
 * a unix path is then marked handed over. */
int pool_shared_reopen(struct pool_shared *sh, const struct conf *cf, const struct conf_pool *cp,
                       unsigned nworkers, struct handoff_hub *hub, struct pool_shared *prev,
                       const struct conf_pool *prev_cp, char *err, size_t errlen);

/* Close the sockets (and remove a unix socket file); clients still in the
 * handoff box go on to its successor or are closed. NULL-safe. */
void pool_shared_close(struct pool_shared *sh, const struct conf_pool *cp);

/* Set up pool `cp` in worker `w` and start accepting. Returns 0 or -1. */
int pool_init(struct pool *p, struct wk *w, const struct conf_pool *cp,
              struct pool_shared *sh);

/* Stop accepting new clients (drain) and close this worker's listener so
 * the kernel refuses new connections; the last worker to stop closes and
 * removes a shared unix socket. */
void pool_stop_listening(struct pool *p);

void pool_fini(struct pool *p);

/* Apply the shared server table if it moved since the last call (the
 * worker was poked): servers added, draining or held out by health
 * checks; the protocol follows, then the version is acknowledged. */
void pool_sync(struct pool *p);

/* Adopt the clients a retiring generation handed to this worker (see
 * handoff.h) as if accepted, or pass them on when this worker drains. */
void pool_adopt_handed(struct pool *p);

/* Outlier detection: a request or connect to server `i` failed (refused,
 * timed out, bad framing) or succeeded. `outlier_detection.failures`
 * failures in a row eject it from this worker's choices for
 * ejection_time x 2^(ejections so far), at most max_ejection_time, and
 * never more than max_ejected_percent of the pool nor its last server.
 * No-ops when the pool has no outlier detection. */
void pool_server_failed(struct pool *p, size_t i);
void pool_server_ok(struct pool *p, size_t i);

/* Warnings that can recur once per request or per client (a server that
 * keeps failing, a connection limit reached under a storm): logged as
 * "pool '<name>': <text>", at most one line a second per server slot
 * (pool_server_warn) or per pool (pool_warn) in this worker; a line says
 * how many like it were held back since the previous one. */
void pool_server_warn(struct pool *p, size_t i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void pool_warn(struct pool *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A connection of this worker to server `i` starts (+1, before anything
 * of the slot is read) or ends (-1, the last thing done with the slot): a
 * draining slot is recycled only when nobody uses it. */
static inline void pool_server_use(struct pool *p, size_t i, int delta)
{
    if (delta > 0) {
        atomic_fetch_add_explicit(&p->shared->tab.users[i], 1, memory_order_relaxed);
    } else {
        atomic_fetch_sub_explicit(&p->shared->tab.users[i], 1, memory_order_release);
    }
}

/* A client of this pool went away (`err`: on an error, else an orderly
 * end): release its slot and count it. */
void pool_client_closed(struct pool *p, bool err);

/* A server connection of this worker opened (+1) or closed (-1). */
void pool_server_conn(struct pool *p, size_t server, int delta);

/* This worker's connection to server `i` opens (balancer count + use) or
 * closes (call last: the slot may be recycled after it). */
static inline void pool_server_take(struct pool *p, size_t i)
{
    bal_opened(&p->bal, (int)i);
    pool_server_use(p, i, 1);
}

static inline void pool_server_drop(struct pool *p, size_t i)
{
    bal_closed(&p->bal, (int)i);
    pool_conn_end(p); /* taken with pool_conn_begin before the connect */
    pool_server_use(p, i, -1);
}

#endif
