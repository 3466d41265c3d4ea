/* conn: one non-blocking socket registered with a loop, with the readiness
 * it last reported (edge-triggered) and its half-close state.
 *
 * A conn is embedded in the object that owns it (a tcp session, later a
 * client or server of a protocol pool). conn_close() unregisters and closes
 * the fd at once; the owner frees its memory from an ev_defer callback, so
 * events already fetched in the same loop iteration still find valid memory
 * (they are dropped because io.fd is -1). */
#ifndef LEGATE_CONN_H
#define LEGATE_CONN_H

#include "buf.h"
#include "ev.h"

#include <stdbool.h>
#include <sys/types.h>

struct conn {
    struct ev_io io;
    bool readable;   /* last event said readable, no EAGAIN since */
    bool writable;   /* same for writes */
    bool hup;        /* an event said the peer shut down or failed: the
                      * EOF or error is still to be read, so a short read
                      * does not mean there is nothing left */
    bool eof;        /* read side finished (peer sent FIN) */
    bool shut_wr;    /* we sent FIN (shutdown SHUT_WR) */
    bool open;       /* fd is registered and open */
};

/* Register `fd` with `loop`, edge-triggered for read and write, calling
 * `fn(loop, &c->io, events)` with c->io.data = `data`. Returns 0, or -1 with
 * errno set (the fd is left open for the caller to close). */
int conn_open(struct conn *c, struct ev_loop *loop, int fd, ev_io_fn fn, void *data);

/* Record the readiness an event reported. */
void conn_note_events(struct conn *c, unsigned events);

/* Read into `q` up to `limit` queued bytes; clears `readable` when the
 * socket is drained and sets `eof` on end of stream. Returns as
 * buf_queue_read_fd. */
ssize_t conn_read(struct conn *c, struct buf_queue *q, struct buf_pool *pool, size_t limit);

/* Write from `q`; clears `writable` when the socket is full. Returns as
 * buf_queue_write_fd. */
ssize_t conn_write(struct conn *c, struct buf_queue *q, struct buf_pool *pool);

/* Drop up to `budget` bytes of what the peer sent, without copying them.
 * Clears `readable` when the socket is drained (left set when the budget
 * ran out first) and sets `eof` on end of stream. Returns 0 at end of
 * stream, -1 on a socket error, 1 otherwise. */
int conn_discard(struct conn *c, size_t budget);

/* Send FIN once (half-close toward the peer). */
void conn_shutdown_write(struct conn *c);

/* Unregister and close the fd (idempotent). */
void conn_close(struct conn *c, struct ev_loop *loop);

#endif
