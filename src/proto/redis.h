/* redis: the sharding Redis proxy (twemproxy's job, done per worker).
 *
 *   client --RESP--> [parse] --route by key (ring)--> server conn out queue
 *        request FIFO per client            reply FIFO per server conn
 *   client <-- replies in request order <-- [frame reply] <-- server conn
 *
 * Many clients share `server_connections` pipelined connections per
 * server. Every request becomes a message linked twice: in its client's
 * order and in the FIFO of the server connection it was sent on. A reply
 * completes the oldest message of that connection; a client's replies are
 * written as soon as all earlier ones are done. Multi-key commands become
 * one fragment per server and are merged (MGET values in key order, DEL and
 * friends summed, MSET +OK); any fragment failing fails the whole command.
 * A server connection that fails or times out answers every message it
 * holds with an error (never a hang) and is reconnected on next use. */
#ifndef LEGATE_REDIS_H
#define LEGATE_REDIS_H

struct pool;
struct handoff_item;

/* Per-worker state of a redis pool: servers, connections, the ring.
 * Return 0, or -1 (logged). */
int redis_pool_init(struct pool *p);
void redis_pool_fini(struct pool *p);
/* The pool's server health moved (pool.h): with auto_eject_hosts the ring
 * drops or takes back servers; without, their keys fail fast meanwhile. */
void redis_pool_sync(struct pool *p);

/* Take ownership of an accepted client. Returns 0, or -1 (the caller
 * closes fd and releases the client slot). */
int redis_client_start(struct pool *p, int fd);

/* The same for a client a retiring generation handed over (handoff.h):
 * its unfinished request is parsed first, and it keeps its AUTH when the
 * item says so. */
int redis_client_adopt(struct pool *p, const struct handoff_item *it);

#endif
