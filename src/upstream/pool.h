/* pool: one configured pool inside one worker: its listener, its balancer
 * state, and the hand-off of accepted clients to the pool's protocol.
 *
 * pool_shared is the per-process part, built by main before workers start
 * (so a bind error stops legate before anything runs): the listening
 * sockets and the client counter that `client_connections` limits. */
#ifndef LEGATE_POOL_H
#define LEGATE_POOL_H

#include "../admin/stats.h"
#include "../conf/conf.h"
#include "../core/ev.h"
#include "bal.h"

#include <stdatomic.h>
#include <stdbool.h>

struct wk;

struct pool_shared {
    atomic_uint clients;  /* open client connections, all workers */
    /* Server health, written by the health checks (main's thread), read by
     * workers when `version` moves (they are poked to look): */
    atomic_bool *down;    /* per server: taken out by its checks */
    atomic_ulong version; /* bumped (release) after `down` changes */
    atomic_uint unix_users; /* workers still accepting on the unix socket */
    int *lfds;            /* tcp: one SO_REUSEPORT socket per worker */
    size_t nlfds;         /* unix: one socket shared by all workers */
    bool is_unix;
};

struct pool {
    const struct conf_pool *cp;
    struct wk *wk;
    struct pool_shared *shared;
    struct ev_io lio;
    struct ev_timer pause;  /* accepts paused after EMFILE and the like */
    bool listening;         /* false once draining */
    bool accept_failing;    /* in a streak of failed accepts (logged once) */
    struct bal bal;
    void *proto;            /* the protocol's per-worker state, if any */
    struct stats_pool *stats; /* this worker's counters for the pool */
    unsigned long seen;     /* shared->version last applied */
    bool *down;             /* this worker's copy of shared->down */
};

/* Open the listening sockets of `cp` for `nworkers`. Returns 0, or -1 with
 * a message in err. */
int pool_shared_open(struct pool_shared *sh, const struct conf *cf,
                     const struct conf_pool *cp, unsigned nworkers, char *err, size_t errlen);

/* Close the sockets (and remove a unix socket file). NULL-safe. */
void pool_shared_close(struct pool_shared *sh, const struct conf_pool *cp);

/* Set up pool `cp` in worker `w` and start accepting. Returns 0 or -1. */
int pool_init(struct pool *p, struct wk *w, const struct conf_pool *cp,
              struct pool_shared *sh);

/* Stop accepting new clients (drain) and close this worker's listener so
 * the kernel refuses new connections; the last worker to stop closes and
 * removes a shared unix socket. */
void pool_stop_listening(struct pool *p);

void pool_fini(struct pool *p);

/* Apply the shared server health if it moved since the last call (the
 * worker was poked): the protocol stops or resumes using servers. */
void pool_sync(struct pool *p);

/* A client of this pool went away (`err`: on an error, else an orderly
 * end): release its slot and count it. */
void pool_client_closed(struct pool *p, bool err);

/* A server connection of this worker opened (+1) or closed (-1). */
void pool_server_conn(struct pool *p, size_t server, int delta);

#endif
