/* handoff: a retiring generation's idle clients move to the newest one.
 *
 * A reload starts a new generation beside the running one, and the running
 * one drains. Its redis and memcache clients are not closed: once nothing
 * of theirs is in flight, each client's socket, with the unfinished request
 * it may have half sent, is queued on the box of the pool that listens on
 * the same address with the same protocol in the newest generation, and a
 * worker of that pool adopts it as if it had just accepted it. HTTP
 * keep-alive clients move the same way when they are between requests.
 * A reload therefore never closes an idle client (redis clients do not
 * resend a request on a connection that closed under them, nor do HTTP
 * clients a POST).
 *
 *    old generation                     newest generation
 *    worker 0 --push--+                 +--> queue 0 --> worker 0 (adopts)
 *    worker 1 --push--+--> box ---------+--> queue 1 --> worker 1
 *                          `successor`
 *
 * Every pool of a generation has one box (in pool_shared). main links each
 * box of every older generation to its successor when a reload succeeds,
 * and unlinks them all at shutdown: a client pushed to a box without a
 * successor is closed, as before handoff existed. A box whose own
 * generation retires forwards what reaches it to its successor, and its
 * leftovers when it is freed, so a client queued during a second reload is
 * never lost or leaked.
 *
 * Thread-safety: one mutex, the hub's (main owns the hub and outlives every
 * generation), guards every box's queues and successor link. Workers push
 * and take; main links, unlinks and frees. */
#ifndef LEGATE_HANDOFF_H
#define LEGATE_HANDOFF_H

#include "../conf/conf.h"
#include "../core/buf.h"
#include "../core/conn.h"
#include "../core/ev.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct handoff_hub {
    pthread_mutex_t lock;
};

/* One client on its way: the socket, whether it had passed AUTH, and the
 * bytes of a request it had begun (unparsed; the adopter parses them first). */
struct handoff_item {
    struct handoff_item *next;
    int fd;
    bool authed;
    size_t len;
    uint8_t data[];
};

struct handoff_queue {
    struct handoff_item *head;      /* oldest first */
    struct handoff_item *tail;
};

/* Wakes worker `worker` of the box's generation to take its queue. */
typedef void (*handoff_wake_fn)(void *arg, unsigned worker);

struct handoff_box {
    struct handoff_hub *hub;
    const struct conf_pool *cp;     /* the pool's configuration (its protocol, AUTH) */
    struct handoff_box *successor;  /* where clients go; NULL: they close */
    struct handoff_queue *queues;   /* per worker */
    unsigned nqueues;
    unsigned next;                  /* the queue the next client goes to */
    handoff_wake_fn wake;           /* NULL until the workers run */
    void *wake_arg;
};

/* Returns 0, or -1 with errno set. */
int handoff_hub_init(struct handoff_hub *hub);
void handoff_hub_fini(struct handoff_hub *hub);

/* Prepare the box of pool `cp` with one queue per worker. Returns 0, or -1
 * when out of memory. */
int handoff_box_init(struct handoff_box *box, struct handoff_hub *hub,
                     const struct conf_pool *cp, unsigned nworkers);

/* The workers run: `wake(arg, i)` may be called from any thread, under the
 * hub's lock. NULL before the workers' resources go away (a box that was
 * never initialised is left alone). */
void handoff_box_ready(struct handoff_box *box, handoff_wake_fn wake, void *arg);

/* Send `box`'s clients to `to` from now on (NULL: close them). Two boxes
 * link only when their pools speak the same protocol; otherwise `box` is
 * unlinked. */
void handoff_link(struct handoff_box *box, struct handoff_box *to);

/* The box has a successor now (it may change before a push). */
bool handoff_linked(struct handoff_box *box);

/* A new item for a client on `fd` with `len` bytes of unfinished request
 * to copy into item->data; NULL when out of memory. */
struct handoff_item *handoff_item_new(int fd, bool authed, size_t len);

/* Queue `it` at `box`'s successor and wake the worker it goes to; the
 * client keeps its AUTH only when both pools ask the same credentials.
 * Returns true when queued; false when `box` has no successor, with the
 * item freed and its socket closed. */
bool handoff_push(struct handoff_box *box, struct handoff_item *it);

/* Hand over the client on the open `c`: with `in` (what it sent and
 * nothing has parsed yet) copied into an item, its socket leaves `loop` (so
 * the old worker sees no more of it) and is pushed to `box`'s successor,
 * or closed when there is none (or no memory for the item). Either way the
 * conn is no longer open: the caller forgets the client without closing
 * anything. */
void handoff_conn(struct handoff_box *box, struct conn *c, struct ev_loop *loop, bool authed,
                  const struct buf_queue *in);

/* Take worker `worker`'s queue (oldest first; NULL when empty). The caller
 * owns the items: adopt each client, then free() the item. */
struct handoff_item *handoff_take(struct handoff_box *box, unsigned worker);

/* Pass worker `worker`'s queue on to the successor (the worker drains), or
 * every queue when `worker` is UINT32_MAX (the box is being freed). */
void handoff_forward(struct handoff_box *box, unsigned worker);

/* Forward every queue, then free the box's memory. NULL-safe. */
void handoff_box_fini(struct handoff_box *box);

#endif
