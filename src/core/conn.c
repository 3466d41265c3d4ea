/* conn: a registered non-blocking socket and its readiness (see conn.h). */
#include "conn.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

int conn_open(struct conn *c, struct ev_loop *loop, int fd, ev_io_fn fn, void *data)
{
    c->io.fd = fd;
    c->io.fn = fn;
    c->io.data = data;
    c->readable = false;
    c->writable = false;
    c->hup = false;
    c->eof = false;
    c->shut_wr = false;
    c->open = false;
    if (ev_io_add(loop, &c->io, EV_READ | EV_WRITE) == -1) {
        c->io.fd = -1;
        return -1;
    }
    c->open = true;
    return 0;
}

void conn_note_events(struct conn *c, unsigned events)
{
    if (events & EV_READ) {
        c->readable = true;
    }
    if (events & EV_HUP) {
        c->hup = true;
    }
    if (events & EV_WRITE) {
        c->writable = true;
    }
}

ssize_t conn_read(struct conn *c, struct buf_queue *q, struct buf_pool *pool, size_t limit)
{
    int drained;
    ssize_t r = buf_queue_read_fd(q, pool, c->io.fd, limit, &drained);
    if (drained && !c->hup) {
        c->readable = false;
    }
    if (r == 0) {
        c->eof = true;
        c->readable = false;
    }
    return r;
}

ssize_t conn_write(struct conn *c, struct buf_queue *q, struct buf_pool *pool)
{
    ssize_t w = buf_queue_write_fd(q, pool, c->io.fd);
    if (w >= 0 && q->bytes > 0) {
        c->writable = false;
    }
    return w;
}

/* Drop up to `budget` bytes of what the peer sent without copying them.
 * Clears `readable` when the socket is drained (left set when the budget
 * ran out first) and sets `eof` on end of stream. Returns 0 at end of
 * stream, -1 on a socket error, 1 otherwise. */
static int conn_discard(struct conn *c, size_t budget)
{
    while (budget > 0) {
        /* MSG_TRUNC on a TCP socket drops the bytes instead of copying
         * them, so no buffer is needed; it never drops more than asked. */
        ssize_t r = recv(c->io.fd, NULL, budget, MSG_TRUNC | MSG_DONTWAIT);
        if (r > 0) {
            budget -= (size_t)r;
            continue;
        }
        if (r == 0) {
            c->eof = true;
            c->readable = false;
            return 0;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->readable = false;
            return 1;
        }
        return -1;
    }
    return 1;
}

enum conn_linger conn_linger(struct conn *c, struct ev_loop *loop, struct ev_timer *timer)
{
    enum { PASS = 1 << 20 }; /* dropped per step, so a worker's other clients run */
    if (!c->shut_wr) {
        conn_shutdown_write(c);
        ev_timer_stop(loop, timer);
        ev_timer_start(loop, timer, CONN_LINGER_MS);
        c->readable = true; /* what came before this edge is unread */
    }
    if (!c->readable) {
        return CONN_LINGER_WAIT;
    }
    int r = conn_discard(c, PASS);
    if (r <= 0) {
        return r == 0 ? CONN_LINGER_CLOSE : CONN_LINGER_FAILED;
    }
    return c->readable ? CONN_LINGER_AGAIN : CONN_LINGER_WAIT;
}

void conn_shutdown_write(struct conn *c)
{
    if (c->open && !c->shut_wr) {
        c->shut_wr = true;
        (void)shutdown(c->io.fd, SHUT_WR);
    }
}

int conn_detach(struct conn *c, struct ev_loop *loop)
{
    if (!c->open) {
        return -1;
    }
    int fd = c->io.fd;
    ev_io_del(loop, &c->io);
    c->open = false;
    return fd;
}

void conn_close(struct conn *c, struct ev_loop *loop)
{
    if (!c->open) {
        return;
    }
    int fd = c->io.fd;
    ev_io_del(loop, &c->io);
    close(fd);
    c->open = false;
}
