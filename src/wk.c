/* wk: worker threads (see wk.h). */
#include "wk.h"
#include "core/san.h"
#include "core/tm.h"
#include "proto/http_head.h"
#include "upstream/pool.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Spare buffer chunks a worker keeps for reuse before freeing them. */
enum { WK_SPARE_CHUNKS = 64, WK_QUEUE_CHUNKS = 8, WK_QUEUE_MIN = 128 * 1024 };

/* The heap has settled when a second passes without a change; memory is
 * returned then, or after WK_TRIM_MAX_WAITS busy seconds regardless. Frees
 * count as changes: a burst's chunks come back after it stopped growing,
 * and a trim that ran before would leave their pages resident. */
enum { WK_TRIM_DELAY_MS = 1000, WK_TRIM_MAX_WAITS = 10 };

/* A burst of connections or requests left the allocator with free memory
 * it keeps (fragmented between live blocks): give its pages back, with the
 * spare chunks and the slabs' empty blocks, once the heap has settled. */
static void wk_trim(struct ev_loop *loop, struct ev_timer *t)
{
    struct wk *w = t->data;
    if (w->changes != w->trim_changes && ++w->trim_waits < WK_TRIM_MAX_WAITS) {
        w->trim_changes = w->changes;
        ev_timer_start(loop, t, WK_TRIM_DELAY_MS);
        return;
    }
    buf_pool_drain(&w->bufs);
    spare_drain(&w->heads);
    slab_set_trim(&w->slabs);
#if !LEGATE_ASAN /* malloc_trim is glibc's; the sanitizer's allocator owns the heap */
    malloc_trim(0);
#endif
    log_debug(w->log, "worker %u: the heap settled; free memory returned", w->id);
}

/* The worker's heap changed (a chunk or slab block was allocated, a slab
 * block emptied, or a chunk freed past the pool's spares): a second after
 * the changes stop, free memory is given back to the kernel. `arg` is the
 * struct wk; fits buf_pool.changed and slab_set.changed. */
static void wk_heap_changed(void *arg)
{
    struct wk *w = arg;
    w->changes++;
    if (!ev_timer_armed(&w->trim)) {
        w->trim_changes = w->changes;
        w->trim_waits = 0;
        ev_timer_start(w->loop, &w->trim, WK_TRIM_DELAY_MS);
    }
}

void wk_item_add(struct wk *w, struct wk_item *it, void (*abort)(struct wk_item *),
                 void (*drain)(struct wk_item *))
{
    it->abort = abort;
    it->drain = drain;
    it->prev = &w->items;
    it->next = w->items.next;
    w->items.next->prev = it;
    w->items.next = it;
    w->nitems++;
}

void wk_item_del(struct wk *w, struct wk_item *it)
{
    it->prev->next = it->next;
    it->next->prev = it->prev;
    it->prev = it->next = it;
    w->nitems--;
    if (w->draining && w->nitems == 0) {
        ev_loop_stop(w->loop);
    }
}

static void wk_grace_over(struct ev_loop *loop, struct ev_timer *t)
{
    (void)loop;
    struct wk *w = t->data;
    log_notice(w->log, "worker %u: shutdown grace over, closing %zu open connections",
               w->id, w->nitems);
    while (w->items.next != &w->items) {
        struct wk_item *it = w->items.next;
        it->abort(it); /* unlinks itself */
    }
}

static void wk_begin_drain(struct wk *w)
{
    if (w->draining) {
        return;
    }
    w->draining = true;
    for (size_t i = 0; i < w->npools; i++) {
        pool_stop_listening(&w->pools[i]);
    }
    /* Items that know when they are idle end there (may unlink now). */
    for (struct wk_item *it = w->items.next; it != &w->items;) {
        struct wk_item *next = it->next;
        if (it->drain != NULL) {
            it->drain(it);
        }
        it = next;
    }
    log_notice(w->log, "worker %u: stopped accepting, draining %zu open connections "
               "(grace %llu ms)", w->id, w->nitems,
               (unsigned long long)w->conf->shutdown_grace);
    if (w->nitems == 0) {
        ev_loop_stop(w->loop);
        return;
    }
    ev_timer_start(w->loop, &w->grace, w->conf->shutdown_grace);
}

static void wk_command(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    (void)events;
    struct wk *w = io->data;
    uint64_t v;
    while (read(w->evfd, &v, sizeof(v)) == (ssize_t)sizeof(v)) {
        /* drain the counter */
    }
    for (size_t i = 0; i < w->npools; i++) {
        pool_sync(&w->pools[i]);
        pool_adopt_handed(&w->pools[i]);
    }
    if (atomic_load(&w->stop_requested)) {
        wk_begin_drain(w);
    }
}

int wk_init(struct wk *w, unsigned id, struct conf *cf, const struct log *log,
            struct pool_shared *shared, const struct wk_opts *opts)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->log = log;
    w->evfd = -1;
    w->items.next = w->items.prev = &w->items;
    w->seed = tm_now_ms() * 0x9E3779B97F4A7C15ull ^ ((uint64_t)getpid() << 16) ^ id;
    atomic_init(&w->stop_requested, false);
    atomic_init(&w->finished, false);
    buf_pool_init(&w->bufs, opts->mbuf_size, WK_SPARE_CHUNKS);
    w->bufs.changed = wk_heap_changed;
    w->bufs.changed_arg = w;
    w->slabs.changed = wk_heap_changed;
    w->slabs.changed_arg = w;
    spare_init(&w->heads, sizeof(struct http_head_block));
    w->trim = (struct ev_timer){ .fn = wk_trim, .data = w };
    w->queue_limit = opts->mbuf_size * WK_QUEUE_CHUNKS;
    if (w->queue_limit < WK_QUEUE_MIN) {
        w->queue_limit = WK_QUEUE_MIN;
    }
    w->grace = (struct ev_timer){ .fn = wk_grace_over, .data = w };
    w->loop = ev_loop_new();
    w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->loop == NULL || w->evfd == -1) {
        log_error(log, "worker %u: cannot create its loop: %s", id, strerror(errno));
        wk_fini(w);
        return -1;
    }
    w->conf = conf_get(cf);
    if (stats_init(&w->stats, cf) == -1) {
        log_error(log, "worker %u: out of memory", id);
        wk_fini(w);
        return -1;
    }
    w->evio = (struct ev_io){ .fd = w->evfd, .fn = wk_command, .data = w };
    if (ev_io_add(w->loop, &w->evio, EV_READ) == -1) {
        log_error(log, "worker %u: epoll: %s", id, strerror(errno));
        wk_fini(w);
        return -1;
    }
    w->pools = calloc(cf->npools, sizeof(*w->pools));
    if (w->pools == NULL) {
        log_error(log, "worker %u: out of memory", id);
        wk_fini(w);
        return -1;
    }
    for (size_t i = 0; i < cf->npools; i++) {
        if (pool_init(&w->pools[i], w, &cf->pools[i], &shared[i]) == -1) {
            wk_fini(w);
            return -1;
        }
        w->npools++;
    }
    return 0;
}

void wk_fini(struct wk *w)
{
    for (size_t i = 0; i < w->npools; i++) {
        pool_fini(&w->pools[i]);
    }
    free(w->pools);
    w->pools = NULL;
    w->npools = 0;
    if (w->evfd != -1) {
        close(w->evfd);
        w->evfd = -1;
    }
    ev_loop_free(w->loop);
    w->loop = NULL;
    buf_pool_drain(&w->bufs);
    spare_drain(&w->heads);
    stats_free(&w->stats);
    conf_put(w->conf);
    w->conf = NULL;
}

/* Apply the configured scheduling policy and nice value to the calling
 * worker thread; a refusal (no capability to change them, as for an
 * unprivileged user asking for a negative nice) is logged and the worker
 * runs with what it has. */
static void wk_schedule(struct wk *w)
{
    if (w->conf->scheduling == CONF_SCHED_BATCH) {
        struct sched_param sp = { .sched_priority = 0 };
        int rc = pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
        if (rc != 0) {
            log_warn(w->log, "worker %u: cannot use SCHED_BATCH: %s", w->id, strerror(rc));
        }
    }
    /* A thread's nice value is its own on Linux: PRIO_PROCESS with a thread id. */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), w->conf->priority) == -1) {
        log_warn(w->log, "worker %u: cannot set priority %d: %s", w->id, w->conf->priority,
                 strerror(errno));
    }
}

static void *wk_main(void *arg)
{
    struct wk *w = arg;
    wk_schedule(w);
    if (ev_loop_run(w->loop) == -1) {
        log_error(w->log, "worker %u: event loop failed: %s", w->id, strerror(errno));
    }
    atomic_store(&w->finished, true);
    return NULL;
}

int wk_start(struct wk *w)
{
    int rc = pthread_create(&w->thread, NULL, wk_main, w);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

void wk_poke(struct wk *w)
{
    uint64_t one = 1;
    ssize_t n = write(w->evfd, &one, sizeof(one));
    (void)n; /* a full counter still wakes the worker */
}

void wk_stop(struct wk *w)
{
    atomic_store(&w->stop_requested, true);
    wk_poke(w);
}

void wk_join(struct wk *w)
{
    pthread_join(w->thread, NULL);
    wk_fini(w);
}
