/* health: active health checks of the servers of every pool that has a
 * `health_check:`, run on main's event loop (one place for the whole
 * process, so every worker sees one verdict per server).
 *
 * Each server is checked every `interval` on a fresh connection (what is
 * sent and expected: health_probe.h); `fall` failures in a row take it out,
 * `rise` passes bring it back. Never more than `max_ejected_percent` of a
 * pool's servers are out at once (at least one may be, if it is > 0). A
 * verdict is published in the pool's pool_shared (`down[i]`, then
 * `version`), and `notify` is called so the workers look at once. */
#ifndef LEGATE_HEALTH_H
#define LEGATE_HEALTH_H

#include "../conf/conf.h"
#include "../core/ev.h"
#include "../core/log.h"
#include "pool.h"

struct health;

typedef void (*health_notify_fn)(void *arg);

/* Start checking the pools of `cf` (shared[i] belongs to cf->pools[i]).
 * Sets *out to NULL when no pool has checks. Returns 0, or -1 when out of
 * memory (logged). */
int health_start(struct health **out, struct ev_loop *loop, const struct conf *cf,
                 struct pool_shared *shared, const struct log *log, health_notify_fn notify,
                 void *arg);

/* Stop every check and free (NULL-safe). */
void health_stop(struct health *h);

#endif
