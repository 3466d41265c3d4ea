/* wk: a worker thread: its own event loop, listeners, buffers, balancer
 * state and sessions. Workers share nothing mutable except the per-pool
 * client counters (atomics in pool_shared). main starts them, tells them to
 * drain (wk_stop) and joins them. */
#ifndef LEGATE_WK_H
#define LEGATE_WK_H

#include "admin/stats.h"
#include "conf/conf.h"
#include "core/buf.h"
#include "core/ev.h"
#include "core/log.h"
#include "core/slab.h"
#include "core/spare.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct pool;
struct pool_shared;

/* Anything a worker must be able to end when the drain grace runs out
 * (a tcp session today; protocol clients later). */
struct wk_item {
    struct wk_item *prev;
    struct wk_item *next;
    void (*abort)(struct wk_item *item);
    /* Optional: drain has begun; end at the next point where nothing is in
     * flight (may unlink the item at once). NULL: let it run its course. */
    void (*drain)(struct wk_item *item);
};

struct wk {
    unsigned id;
    struct ev_loop *loop;
    struct conf *conf;          /* one reference held */
    const struct log *log;
    struct buf_pool bufs;
    struct slab_set slabs;      /* every pool's slabs, trimmed with the heap */
    struct spare heads;         /* http head blocks (struct http_head_block) */
    size_t queue_limit;         /* bytes queued per direction before reads stop */
    struct pool *pools;
    size_t npools;

    int evfd;                   /* eventfd: main -> worker commands */
    struct ev_io evio;
    atomic_bool stop_requested;
    atomic_bool finished;       /* the thread is about to return (join will not block) */
    bool draining;
    struct ev_timer grace;
    struct ev_timer trim;       /* returns freed memory once the heap settles */
    uint64_t changes;           /* times the heap changed (chunks, slab blocks) */
    uint64_t trim_changes;      /* `changes` when the trim timer was armed */
    unsigned trim_waits;        /* times it found the heap still changing */

    struct stats stats;         /* this worker's counters (it is their only writer) */
    struct wk_item items;       /* list head of live sessions */
    size_t nitems;
    uint64_t seed;

    pthread_t thread;
};

struct wk_opts {
    size_t mbuf_size;
};

/* Prepare worker `id` for `cf` (takes a reference) with the listeners in
 * `shared` (one per pool). Returns 0, or -1 with a message logged. */
int wk_init(struct wk *w, unsigned id, struct conf *cf, const struct log *log,
            struct pool_shared *shared, const struct wk_opts *opts);

/* Start the thread. Returns 0, or -1 with errno set. */
int wk_start(struct wk *w);

/* Ask the worker to stop accepting and drain (async-signal-unsafe; called
 * from main's signal loop). */
void wk_stop(struct wk *w);

/* Wake the worker to look at what changed in the pools' shared state
 * (server health): thread-safe, callable from any thread. */
void wk_poke(struct wk *w);

/* Wait for the thread and free everything it owned. */
void wk_join(struct wk *w);

/* Free a worker that was initialised but never started. */
void wk_fini(struct wk *w);

/* Link/unlink a live item; unlinking the last one while draining ends the
 * worker's loop. */
void wk_item_add(struct wk *w, struct wk_item *it, void (*abort)(struct wk_item *),
                 void (*drain)(struct wk_item *));
void wk_item_del(struct wk *w, struct wk_item *it);

#endif
