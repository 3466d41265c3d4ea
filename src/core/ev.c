/* ev: epoll loop, pairing-heap timers and deferred callbacks (see ev.h). */
#include "ev.h"
#include "tm.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

enum { EV_BATCH = 256 };

struct ev_loop {
    int epfd;
    bool stop;
    uint64_t now;    /* ms */
    uint64_t now_us; /* the same instant in us */
    uint64_t iter;   /* iterations begun, counting from 1 */
    int nevents;     /* events the current iteration's poll returned */
    struct ev_timer *timers; /* root of the pairing heap on `when` */
    struct ev_defer *defer_head;
    struct ev_defer **defer_tail;
    struct ev_defer *next_head; /* ev_defer_next: for the coming iteration */
    struct ev_defer **next_tail;
    struct ev_defer *due_head;  /* ev_defer_next'ed last iteration: run after */
    struct ev_defer **due_tail; /* this one's defers */
};

/* Read the clock once for the whole iteration. */
static void ev_loop_tick(struct ev_loop *loop)
{
    loop->iter++;
    loop->now_us = tm_now_us();
    loop->now = loop->now_us / 1000u;
}

struct ev_loop *ev_loop_new(void)
{
    struct ev_loop *loop = calloc(1, sizeof(*loop));
    if (loop == NULL) {
        return NULL;
    }
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd == -1) {
        free(loop);
        return NULL;
    }
    ev_loop_tick(loop);
    loop->defer_tail = &loop->defer_head;
    loop->next_tail = &loop->next_head;
    loop->due_tail = &loop->due_head;
    return loop;
}

void ev_loop_free(struct ev_loop *loop)
{
    if (loop == NULL) {
        return;
    }
    close(loop->epfd);
    free(loop);
}

uint64_t ev_iteration(const struct ev_loop *loop)
{
    return loop->iter;
}

int ev_events(const struct ev_loop *loop)
{
    return loop->nevents;
}

uint64_t ev_now(const struct ev_loop *loop)
{
    return loop->now;
}

uint64_t ev_now_us(const struct ev_loop *loop)
{
    return loop->now_us;
}

void ev_loop_stop(struct ev_loop *loop)
{
    loop->stop = true;
}

static int ev_ctl(struct ev_loop *loop, int op, struct ev_io *io, uint32_t mask)
{
    struct epoll_event ee = { .events = mask, .data.ptr = io };
    return epoll_ctl(loop->epfd, op, io->fd, &ee);
}

int ev_io_add(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    uint32_t mask = EPOLLET | EPOLLRDHUP;
    if (events & EV_READ) {
        mask |= EPOLLIN;
    }
    if (events & EV_WRITE) {
        mask |= EPOLLOUT;
    }
    return ev_ctl(loop, EPOLL_CTL_ADD, io, mask);
}

static uint32_t ev_level_mask(unsigned events)
{
    return ((events & EV_READ) ? EPOLLIN : 0u) | ((events & EV_WRITE) ? EPOLLOUT : 0u);
}

int ev_io_add_level(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    return ev_ctl(loop, EPOLL_CTL_ADD, io, ev_level_mask(events));
}

int ev_io_mod_level(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    return ev_ctl(loop, EPOLL_CTL_MOD, io, ev_level_mask(events));
}

int ev_io_add_shared(struct ev_loop *loop, struct ev_io *io)
{
    return ev_ctl(loop, EPOLL_CTL_ADD, io, EPOLLIN | EPOLLEXCLUSIVE);
}

void ev_io_del(struct ev_loop *loop, struct ev_io *io)
{
    if (io->fd != -1) {
        (void)ev_ctl(loop, EPOLL_CTL_DEL, io, 0);
        io->fd = -1;
    }
}

/* ---- timers: a pairing heap ----
 * Each timer is a node; its children hang off `child` as a list linked by
 * `next`, and `prev` points back to the previous sibling, or to the parent
 * for the first child, or for the root to itself (NULL: not armed).
 * Arming is a meld with the root; taking the earliest and stopping one
 * pair up the orphaned children (two passes). No allocation anywhere, so
 * arming cannot fail. */

/* Meld two roots (next NULL); the later becomes the earlier's first
 * child. Returns the new root, its prev NULL: the caller that makes it the
 * heap's root points it at itself. */
static struct ev_timer *ev_meld(struct ev_timer *a, struct ev_timer *b)
{
    a->prev = b->prev = NULL; /* (the heap's root points at itself) */
    if (b->when < a->when) {
        struct ev_timer *t = a;
        a = b;
        b = t;
    }
    b->prev = a;
    b->next = a->child;
    if (a->child != NULL) {
        a->child->prev = b;
    }
    a->child = b;
    return a;
}

/* Meld a list of siblings into one root: pairs left to right, then the
 * pairs right to left. Returns NULL for an empty list. */
static struct ev_timer *ev_pair_up(struct ev_timer *first)
{
    struct ev_timer *pairs = NULL; /* melded pairs, last first */
    while (first != NULL) {
        struct ev_timer *a = first, *b = a->next;
        first = b != NULL ? b->next : NULL;
        a->next = a->prev = NULL;
        if (b != NULL) {
            b->next = b->prev = NULL;
            a = ev_meld(a, b);
        }
        a->next = pairs;
        pairs = a;
    }
    struct ev_timer *root = pairs;
    if (root == NULL) {
        return NULL;
    }
    pairs = root->next;
    root->next = NULL;
    while (pairs != NULL) {
        struct ev_timer *rest = pairs->next;
        pairs->next = NULL;
        root = ev_meld(root, pairs);
        pairs = rest;
    }
    return root;
}

void ev_timer_stop(struct ev_loop *loop, struct ev_timer *t)
{
    if (t->prev == NULL) {
        return; /* not armed */
    }
    if (t == loop->timers) {
        loop->timers = ev_pair_up(t->child);
    } else {
        /* Unlink t from its siblings, then meld its children back in. */
        if (t->prev->child == t) {
            t->prev->child = t->next;
        } else {
            t->prev->next = t->next;
        }
        if (t->next != NULL) {
            t->next->prev = t->prev;
        }
        struct ev_timer *sub = ev_pair_up(t->child);
        if (sub != NULL) {
            loop->timers = ev_meld(loop->timers, sub);
        }
    }
    if (loop->timers != NULL) {
        loop->timers->prev = loop->timers;
    }
    t->child = t->next = t->prev = NULL;
}

void ev_timer_start(struct ev_loop *loop, struct ev_timer *t, uint64_t ms)
{
    ev_timer_stop(loop, t);
    t->when = loop->now + ms;
    t->child = t->next = t->prev = NULL;
    loop->timers = loop->timers != NULL ? ev_meld(loop->timers, t) : t;
    loop->timers->prev = loop->timers;
}

static int ev_next_timeout(const struct ev_loop *loop)
{
    if (loop->defer_head != NULL || loop->next_head != NULL) {
        return 0;
    }
    if (loop->timers == NULL) {
        return -1;
    }
    uint64_t when = loop->timers->when;
    if (when <= loop->now) {
        return 0;
    }
    uint64_t d = when - loop->now;
    return d > 60000 ? 60000 : (int)d;
}

static void ev_run_timers(struct ev_loop *loop)
{
    while (loop->timers != NULL && loop->timers->when <= loop->now) {
        struct ev_timer *t = loop->timers;
        ev_timer_stop(loop, t);
        t->fn(loop, t);
    }
}

/* Append `d` to the list whose tail pointer is *tail, unless it is queued
 * on a list already. */
static void ev_queue(struct ev_defer ***tail, struct ev_defer *d)
{
    if (d->queued) {
        return;
    }
    d->queued = true;
    d->next = NULL;
    **tail = d;
    *tail = &d->next;
}

void ev_defer(struct ev_loop *loop, struct ev_defer *d)
{
    ev_queue(&loop->defer_tail, d);
}

void ev_defer_next(struct ev_loop *loop, struct ev_defer *d)
{
    ev_queue(&loop->next_tail, d);
}

/* Unlink `d` from the list at *head (tail pointer *tail); false when it is
 * not there. */
static bool ev_defer_unlink(struct ev_defer **head, struct ev_defer ***tail,
                            struct ev_defer *d)
{
    for (struct ev_defer **pp = head; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == d) {
            *pp = d->next;
            if (*tail == &d->next) {
                *tail = pp;
            }
            return true;
        }
    }
    return false;
}

void ev_defer_cancel(struct ev_loop *loop, struct ev_defer *d)
{
    if (!d->queued) {
        return;
    }
    if (!ev_defer_unlink(&loop->defer_head, &loop->defer_tail, d) &&
        !ev_defer_unlink(&loop->due_head, &loop->due_tail, d)) {
        ev_defer_unlink(&loop->next_head, &loop->next_tail, d);
    }
    d->queued = false;
}

/* Append the list at *head to this iteration's defers and empty it. */
static void ev_take(struct ev_loop *loop, struct ev_defer **head, struct ev_defer ***tail)
{
    if (*head == NULL) {
        return;
    }
    *loop->defer_tail = *head;
    loop->defer_tail = *tail;
    *head = NULL;
    *tail = head;
}

static void ev_run_defers(struct ev_loop *loop)
{
    /* A deferred callback may queue more; they run in the same pass. */
    while (loop->defer_head != NULL) {
        struct ev_defer *d = loop->defer_head;
        loop->defer_head = d->next;
        if (loop->defer_head == NULL) {
            loop->defer_tail = &loop->defer_head;
        }
        d->queued = false;
        d->fn(loop, d);
    }
}

void ev_run_pending(struct ev_loop *loop)
{
    ev_take(loop, &loop->due_head, &loop->due_tail);
    ev_take(loop, &loop->next_head, &loop->next_tail);
    ev_run_defers(loop);
}

int ev_loop_run(struct ev_loop *loop)
{
    struct epoll_event events[EV_BATCH];
    loop->stop = false;
    while (!loop->stop) {
        int n = epoll_wait(loop->epfd, events, EV_BATCH, ev_next_timeout(loop));
        if (n == -1 && errno != EINTR) {
            return -1;
        }
        ev_loop_tick(loop);
        loop->nevents = n > 0 ? n : 0;
        /* Held from the last iteration: they run after this one's events
         * and defers (a `queued` defer is not queued twice). */
        if (loop->next_head != NULL) {
            loop->due_head = loop->next_head;
            loop->due_tail = loop->next_tail;
            loop->next_head = NULL;
            loop->next_tail = &loop->next_head;
        }
        for (int i = 0; i < n; i++) {
            struct ev_io *io = events[i].data.ptr;
            if (io->fd == -1) {
                continue; /* removed earlier in this batch */
            }
            uint32_t e = events[i].events;
            unsigned what = 0;
            if (e & (EPOLLIN | EPOLLRDHUP)) {
                what |= EV_READ;
            }
            if (e & EPOLLOUT) {
                what |= EV_WRITE;
            }
            if (e & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
                what |= EV_HUP | EV_READ;
            }
            io->fn(loop, io, what);
        }
        ev_run_timers(loop);
        ev_run_defers(loop);
        ev_take(loop, &loop->due_head, &loop->due_tail);
        ev_run_defers(loop);
    }
    return 0;
}
