/* disc: discovery of pool servers on main's event loop — `dns: NAME:PORT`
 * (every A/AAAA address), `dns_srv: NAME` (targets of the lowest priority,
 * resolved, with their ports and weights) and `file: PATH` (an endpoints
 * file, re-read when its size, time or inode changes).
 *
 * Each pool looks up at once, then again after `interval` or the smallest
 * record TTL, whichever is sooner (never more often than once a second
 * because of a TTL). A result is applied to the pool's server table
 * (server.h): new endpoints take free slots, missing ones drain, and
 * `notify` pokes the workers. A failed lookup (error, timeout, no records,
 * unreadable or malformed file) keeps the last good set; it is logged and
 * counted (server_table.disc_failures). For ketama pools the number of ring
 * points that changed owner is logged. */
#ifndef LEGATE_DISC_H
#define LEGATE_DISC_H

#include "../conf/conf.h"
#include "../core/ev.h"
#include "../core/log.h"
#include "pool.h"

struct disc;

typedef void (*disc_notify_fn)(void *arg);

/* Start discovery for the pools of `cf` that have it (shared[i] belongs to
 * cf->pools[i]). *out is NULL when no pool has discovery. Returns 0, or -1
 * with the reason logged (a resolver that cannot be set up). */
int disc_start(struct disc **out, struct ev_loop *loop, const struct conf *cf,
               struct pool_shared *shared, const struct log *log, disc_notify_fn notify,
               void *arg);

/* Stop every lookup and free (NULL-safe). */
void disc_stop(struct disc *d);

#endif
