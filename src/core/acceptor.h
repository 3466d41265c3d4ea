/* acceptor: a listening socket's accept loop, paused while accepts fail.
 *
 * Out of descriptors (or memory) accept fails while the level-triggered
 * listener stays readable, so the loop would spin: the acceptor takes the
 * listener out of the loop for ACCEPTOR_PAUSE_MS, then puts it back and
 * tries at once. Trying is needed because Linux takes the descriptor before
 * it looks at the queue: the failure may have had no client behind it, and
 * then nothing would wake the listener to find out that accepts work again.
 * A streak of failures is logged once when it starts and once when it ends
 * (the first accept that does not fail: a client, or an empty queue).
 *
 * Not thread-safe: one acceptor per loop; several may share one listening
 * socket (EPOLLEXCLUSIVE). */
#ifndef LEGATE_ACCEPTOR_H
#define LEGATE_ACCEPTOR_H

#include "ev.h"
#include "log.h"

#include <stdbool.h>

enum { ACCEPTOR_PAUSE_MS = 100, ACCEPTOR_EPOLL_RETRY_MS = 1000 };

struct acceptor;

/* A client was accepted: `fd` (non-blocking, close-on-exec) is the callee's. */
typedef void (*acceptor_fn)(struct acceptor *a, int fd);

struct acceptor {
    struct ev_io io;            /* io.fd is -1 while paused */
    struct ev_timer pause;
    int fd;                     /* the listening socket (not owned) */
    bool failing;               /* inside a streak of failed accepts */
    char label[128];            /* names the listener in the log: "pool 'web'" */
    const struct log *log;
    acceptor_fn accepted;
    void *data;                 /* the owner's, for `accepted` */
};

void acceptor_init(struct acceptor *a, int fd, const char *label, const struct log *log,
                   acceptor_fn accepted, void *data);

/* Start accepting on `loop`. Returns 0, or -1 with errno (epoll). */
int acceptor_start(struct acceptor *a, struct ev_loop *loop);

/* Stop accepting (paused or not); the socket is left open. */
void acceptor_stop(struct acceptor *a, struct ev_loop *loop);

#endif
