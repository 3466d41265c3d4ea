/* tcp: the L4 broker. Each accepted client gets a session: legate picks a
 * server with the pool's balancer, connects (bounded by the connect
 * timeout, trying further servers on refusal or timeout, up to `retries`),
 * then copies bytes both ways.
 *
 *   client ──read──▶ up queue ──write──▶ server
 *   client ◀─write── down queue ◀─read── server
 *
 * Each queue holds at most wk->queue_limit bytes: when it is full legate
 * stops reading that side, so a slow reader slows its sender through TCP
 * flow control and memory per session stays bounded. A FIN from one side
 * is passed on once its queue is flushed (half-close); a reset or write
 * error on either side closes both. The idle timeout closes both sides
 * after no byte moved for that long. */
#ifndef LEGATE_TCP_H
#define LEGATE_TCP_H

struct pool;

/* Take ownership of the accepted client `fd` for pool `p`. Returns 0, or
 * -1 (out of memory; the caller closes fd and releases the client slot). */
int tcp_session_start(struct pool *p, int fd);

#endif
