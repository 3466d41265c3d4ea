/* ev: one epoll event loop per worker thread, with a timer heap and
 * end-of-iteration deferred callbacks.
 *
 * Return convention of the whole project: 0 ok, -1 error (errno set or a
 * message logged), -2 "again" (would block / need more input).
 *
 * I/O watchers are edge-triggered: a callback must consume until EAGAIN or
 * remember that the fd is still ready. Timers fire at most once per start.
 * Deferred callbacks run after all events and timers of an iteration: that
 * is where objects that an event in the same batch may still point to are
 * freed (see conn.h). */
#ifndef LEGATE_EV_H
#define LEGATE_EV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct ev_io;
struct ev_timer;
struct ev_defer;

enum {
    EV_READ = 1u << 0,
    EV_WRITE = 1u << 1,
    EV_HUP = 1u << 2, /* peer closed / error: read to find out which */
};

typedef void (*ev_io_fn)(struct ev_loop *loop, struct ev_io *io, unsigned events);
typedef void (*ev_timer_fn)(struct ev_loop *loop, struct ev_timer *t);
typedef void (*ev_defer_fn)(struct ev_loop *loop, struct ev_defer *d);

struct ev_io {
    int fd;        /* -1 once removed: pending events for it are dropped */
    ev_io_fn fn;
    void *data;
};

/* Timers live in a pairing heap threaded through the timers themselves,
 * so arming one never allocates and cannot fail. */
struct ev_timer {
    uint64_t when; /* absolute, tm_now_ms() scale */
    struct ev_timer *child; /* heap links: first child, next sibling, and */
    struct ev_timer *next;  /* the previous sibling or, for a first child, */
    struct ev_timer *prev;  /* the parent; the root's is itself; NULL when
                             * not armed */
    ev_timer_fn fn;
    void *data;
};

struct ev_defer {
    struct ev_defer *next;
    ev_defer_fn fn;
    void *data;
    bool queued;
};

/* Create a loop. Returns NULL with errno set on failure. */
struct ev_loop *ev_loop_new(void);
void ev_loop_free(struct ev_loop *loop);

/* Run until ev_loop_stop. Returns 0, or -1 if epoll_wait failed. */
int ev_loop_run(struct ev_loop *loop);
void ev_loop_stop(struct ev_loop *loop);

/* Run the deferred callbacks queued so far (teardown after the loop has
 * stopped, so that queued releases still free their memory). */
void ev_run_pending(struct ev_loop *loop);

/* The current iteration's number: 1 for the first, one more each time. */
uint64_t ev_iteration(const struct ev_loop *loop);
/* How many I/O events the current iteration's poll returned. */
int ev_events(const struct ev_loop *loop);
/* Time cached at the start of the current iteration (ms, monotonic). */
uint64_t ev_now(const struct ev_loop *loop);
/* The same instant in microseconds (for latency histograms). */
uint64_t ev_now_us(const struct ev_loop *loop);

/* Watch io->fd for `events` (EV_READ|EV_WRITE), edge-triggered.
 * Returns 0, or -1 with errno set. */
int ev_io_add(struct ev_loop *loop, struct ev_io *io, unsigned events);

/* Watch io->fd for `events`, level-triggered (for sockets owned by a
 * library that expects to be called while data is pending: the resolver);
 * ev_io_mod_level changes the events. Return 0, or -1 with errno set. */
int ev_io_add_level(struct ev_loop *loop, struct ev_io *io, unsigned events);
int ev_io_mod_level(struct ev_loop *loop, struct ev_io *io, unsigned events);

/* Watch a shared listening fd: level-triggered with EPOLLEXCLUSIVE so one
 * of the loops sharing it wakes per connection. Returns 0 or -1. */
int ev_io_add_shared(struct ev_loop *loop, struct ev_io *io);

/* Stop watching io->fd and mark io->fd = -1 (the fd is not closed; the
 * caller keeps ownership and closes it after this call). */
void ev_io_del(struct ev_loop *loop, struct ev_io *io);

/* Arm `t` to fire `ms` from the loop's cached now; re-arming moves it. */
void ev_timer_start(struct ev_loop *loop, struct ev_timer *t, uint64_t ms);
void ev_timer_stop(struct ev_loop *loop, struct ev_timer *t);

static inline bool ev_timer_armed(const struct ev_timer *t)
{
    return t->prev != NULL;
}

/* Queue `d` to run at the end of this iteration; queuing twice is a no-op. */
void ev_defer(struct ev_loop *loop, struct ev_defer *d);
/* Run `d` at the end of the next loop iteration, after that iteration's
 * events and ev_defer callbacks; that iteration polls without blocking.
 * For work worth holding back one iteration in case more joins it. An
 * ev_defer of a `d` already queued either way does nothing. */
void ev_defer_next(struct ev_loop *loop, struct ev_defer *d);
/* Unqueue `d` wherever it is queued (for an object freed before its
 * callback would run); nothing when it is not queued. */
void ev_defer_cancel(struct ev_loop *loop, struct ev_defer *d);

#endif
