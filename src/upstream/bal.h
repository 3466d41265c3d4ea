/* bal: choosing a server of a non-sharded pool: weighted round robin
 * (smooth, as nginx), weighted least connections, weighted random, and
 * p2c_ewma — the power of two choices over a peak-sensitive moving average
 * of latency times outstanding work (as Linkerd): two random candidates,
 * the one with the lower (ewma + 1) * (active + 1) / weight wins.
 *
 * One bal per pool per worker: plain state, no locks. The caller reports
 * connections opened and closed so least_connections sees them. */
#ifndef LEGATE_BAL_H
#define LEGATE_BAL_H

#include "../conf/conf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bal_server {
    unsigned weight;
    int64_t current; /* smooth round robin */
    unsigned active; /* open connections (tcp) or requests (http) of this worker */
    bool down;       /* out (health checks, not in the table): never picked */
    double ewma_us;  /* p2c_ewma: latency, decaying over BAL_EWMA_TAU_US (bal_cost) */
    uint64_t ewma_at_us; /* when it was last updated */
};

enum { BAL_EWMA_TAU_US = 10 * 1000 * 1000 };

struct bal {
    enum conf_balance kind;
    struct bal_server *servers;
    size_t n;
    size_t next;     /* where least_connections starts its scan */
    uint64_t rng;    /* xorshift state */
};

/* Set up for the servers of `cp`; `seed` makes random choices differ per
 * worker. Returns 0, or -1 when out of memory. */
/* The same over `n` servers (a slice of a pool's list: indexes are then
 * relative to `servers`). */
int bal_init_servers(struct bal *b, enum conf_balance kind, const struct conf_server *servers,
                     size_t n, uint64_t seed);
void bal_free(struct bal *b);

/* Server `i` now stands for a new endpoint of weight `weight`. */
static inline void bal_reset_server(struct bal *b, size_t i, unsigned weight)
{
    b->servers[i] = (struct bal_server){ .weight = weight };
}

/* Take server `i` out of the choice (health checks) or put it back. */
static inline void bal_set_down(struct bal *b, size_t i, bool down)
{
    b->servers[i].down = down;
}

/* Pick a server index, never a down one nor one of the `nskip` indexes in `skip`,
 * at `now_us` (p2c_ewma decays the averages to that instant). Returns the
 * index, or -1 if every server is skipped. */
int bal_pick(struct bal *b, const int *skip, size_t nskip, uint64_t now_us);

static inline void bal_opened(struct bal *b, int i)
{
    b->servers[i].active++;
}

static inline void bal_closed(struct bal *b, int i)
{
    b->servers[i].active--;
}

/* A latency measured on server `i` at `now_us` (p2c_ewma; a no-op for the
 * other kinds): a sample above the average replaces it (peak-sensitive),
 * one below moves it by the decay since the last one. */
void bal_observe(struct bal *b, size_t i, uint64_t latency_us, uint64_t now_us);

/* A uniform 64-bit random number from the balancer's generator. */
uint64_t bal_random(struct bal *b);

#endif
