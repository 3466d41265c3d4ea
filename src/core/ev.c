/* ev: epoll loop, binary-heap timers and deferred callbacks (see ev.h). */
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
    struct ev_timer **heap; /* min-heap on `when` */
    size_t nheap;
    size_t capheap;
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
    free(loop->heap);
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

/* ---- timers: a binary min-heap; t->slot is the 1-based index ---- */

static void ev_heap_set(struct ev_loop *loop, size_t i, struct ev_timer *t)
{
    loop->heap[i] = t;
    t->slot = i + 1;
}

static void ev_heap_up(struct ev_loop *loop, size_t i)
{
    struct ev_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (loop->heap[parent]->when <= t->when) {
            break;
        }
        ev_heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    ev_heap_set(loop, i, t);
}

static void ev_heap_down(struct ev_loop *loop, size_t i)
{
    struct ev_timer *t = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->nheap) {
            break;
        }
        if (child + 1 < loop->nheap &&
            loop->heap[child + 1]->when < loop->heap[child]->when) {
            child++;
        }
        if (t->when <= loop->heap[child]->when) {
            break;
        }
        ev_heap_set(loop, i, loop->heap[child]);
        i = child;
    }
    ev_heap_set(loop, i, t);
}

void ev_timer_stop(struct ev_loop *loop, struct ev_timer *t)
{
    if (t->slot == 0) {
        return;
    }
    size_t i = t->slot - 1;
    t->slot = 0;
    loop->nheap--;
    if (i == loop->nheap) {
        return;
    }
    ev_heap_set(loop, i, loop->heap[loop->nheap]);
    ev_heap_up(loop, i);
    ev_heap_down(loop, loop->heap[i]->slot - 1);
}

void ev_timer_start(struct ev_loop *loop, struct ev_timer *t, uint64_t ms)
{
    ev_timer_stop(loop, t);
    if (loop->nheap == loop->capheap) {
        size_t cap = loop->capheap ? loop->capheap * 2 : 64;
        struct ev_timer **heap = realloc(loop->heap, cap * sizeof(*heap));
        if (heap == NULL) {
            abort(); /* timers are the loop's spine: no sane way on */
        }
        loop->heap = heap;
        loop->capheap = cap;
    }
    t->when = loop->now + ms;
    ev_heap_set(loop, loop->nheap, t);
    loop->nheap++;
    ev_heap_up(loop, loop->nheap - 1);
}

static int ev_next_timeout(const struct ev_loop *loop)
{
    if (loop->defer_head != NULL || loop->next_head != NULL) {
        return 0;
    }
    if (loop->nheap == 0) {
        return -1;
    }
    uint64_t when = loop->heap[0]->when;
    if (when <= loop->now) {
        return 0;
    }
    uint64_t d = when - loop->now;
    return d > 60000 ? 60000 : (int)d;
}

static void ev_run_timers(struct ev_loop *loop)
{
    while (loop->nheap > 0 && loop->heap[0]->when <= loop->now) {
        struct ev_timer *t = loop->heap[0];
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
