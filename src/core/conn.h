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

/* A lingering close, one step at a time: after an answer that ends the
 * connection before the peer's request was read, send FIN and drop what
 * the peer still sends, unread, until it closes or `timer` (the owner's,
 * whose callback closes) fires after CONN_LINGER_MS. Closing on unread
 * input would reset the connection, and a peer still sending would see
 * the reset instead of the answer. The first step (shut_wr not yet set)
 * sends FIN and arms `timer`; a connection that sent FIN is lingering. */
enum { CONN_LINGER_MS = 5000 };
enum conn_linger {
    CONN_LINGER_WAIT,   /* drained for now: step again on the next read event */
    CONN_LINGER_AGAIN,  /* one pass's budget ran out: step again next iteration */
    CONN_LINGER_CLOSE,  /* the peer closed: close now */
    CONN_LINGER_FAILED, /* a socket error: close now */
};
enum conn_linger conn_linger(struct conn *c, struct ev_loop *loop, struct ev_timer *timer);

/* Send FIN once (half-close toward the peer). */
void conn_shutdown_write(struct conn *c);

/* Unregister the fd without closing it and return it (its new owner's
 * now); -1 when the conn is not open. */
int conn_detach(struct conn *c, struct ev_loop *loop);

/* Unregister and close the fd (idempotent). */
void conn_close(struct conn *c, struct ev_loop *loop);

#endif
