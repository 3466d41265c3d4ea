/* acceptor: a listening socket's accept loop, paused while accepts fail
 * (see acceptor.h). */
#include "acceptor.h"
#include "net.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void acceptor_ready(struct ev_loop *loop, struct ev_io *io, unsigned events);

/* The first accept that does not fail ends a streak. */
static void acceptor_works(struct acceptor *a)
{
    if (a->failing) {
        log_notice(a->log, "%s: accepting again", a->label);
        a->failing = false;
    }
}

/* The pause is over: listen again and try at once (see acceptor.h). */
static void acceptor_resume(struct ev_loop *loop, struct ev_timer *t)
{
    struct acceptor *a = t->data;
    a->io.fd = a->fd;
    if (ev_io_add_shared(loop, &a->io) == -1) {
        log_error(a->log, "%s: epoll: %s", a->label, strerror(errno));
        a->io.fd = -1;
        ev_timer_start(loop, t, ACCEPTOR_EPOLL_RETRY_MS);
        return;
    }
    acceptor_ready(loop, &a->io, EV_READ);
}

static void acceptor_ready(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    (void)events;
    struct acceptor *a = io->data;
    for (;;) {
        int fd = net_accept(a->fd);
        if (fd == -2) {
            acceptor_works(a);
            return;
        }
        if (fd == -1) {
            if (!a->failing) {
                log_warn(a->log, "%s: accept failed: %s; pausing accepts for %d ms "
                         "until it works again", a->label, strerror(errno), ACCEPTOR_PAUSE_MS);
                a->failing = true;
            }
            ev_io_del(loop, &a->io);
            ev_timer_start(loop, &a->pause, ACCEPTOR_PAUSE_MS);
            return;
        }
        acceptor_works(a);
        a->accepted(a, fd);
    }
}

void acceptor_init(struct acceptor *a, int fd, const char *label, const struct log *log,
                   acceptor_fn accepted, void *data)
{
    *a = (struct acceptor){ .fd = fd, .log = log, .accepted = accepted, .data = data };
    a->io = (struct ev_io){ .fd = -1, .fn = acceptor_ready, .data = a };
    a->pause = (struct ev_timer){ .fn = acceptor_resume, .data = a };
    snprintf(a->label, sizeof(a->label), "%s", label);
}

int acceptor_start(struct acceptor *a, struct ev_loop *loop)
{
    a->io.fd = a->fd;
    if (ev_io_add_shared(loop, &a->io) == -1) {
        a->io.fd = -1;
        return -1;
    }
    return 0;
}

void acceptor_stop(struct acceptor *a, struct ev_loop *loop)
{
    ev_io_del(loop, &a->io);
    ev_timer_stop(loop, &a->pause);
}
