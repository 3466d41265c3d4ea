/* handoff: a retiring generation's idle clients move to the newest one
 * (see handoff.h). */
#include "handoff.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int handoff_hub_init(struct handoff_hub *hub)
{
    int rc = pthread_mutex_init(&hub->lock, NULL);
    return rc == 0 ? 0 : -1;
}

void handoff_hub_fini(struct handoff_hub *hub)
{
    pthread_mutex_destroy(&hub->lock);
}

int handoff_box_init(struct handoff_box *box, struct handoff_hub *hub,
                     const struct conf_pool *cp, unsigned nworkers)
{
    memset(box, 0, sizeof(*box));
    box->hub = hub;
    box->cp = cp;
    box->queues = calloc(nworkers, sizeof(*box->queues));
    if (box->queues == NULL) {
        return -1;
    }
    box->nqueues = nworkers;
    return 0;
}

void handoff_box_ready(struct handoff_box *box, handoff_wake_fn wake, void *arg)
{
    if (box->queues == NULL) {
        return; /* never initialised */
    }
    pthread_mutex_lock(&box->hub->lock);
    box->wake = wake;
    box->wake_arg = arg;
    pthread_mutex_unlock(&box->hub->lock);
}

void handoff_link(struct handoff_box *box, struct handoff_box *to)
{
    if (to != NULL && to->cp->proto != box->cp->proto) {
        to = NULL;
    }
    pthread_mutex_lock(&box->hub->lock);
    box->successor = to;
    pthread_mutex_unlock(&box->hub->lock);
}

bool handoff_linked(struct handoff_box *box)
{
    pthread_mutex_lock(&box->hub->lock);
    bool linked = box->successor != NULL;
    pthread_mutex_unlock(&box->hub->lock);
    return linked;
}

struct handoff_item *handoff_item_new(int fd, bool authed, size_t len)
{
    struct handoff_item *it = malloc(sizeof(*it) + len);
    if (it != NULL) {
        it->next = NULL;
        it->fd = fd;
        it->authed = authed;
        it->len = len;
    }
    return it;
}

static bool handoff_same_text(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* A client that passed AUTH at `from` need not repeat it at `to`. */
static bool handoff_same_auth(const struct conf_pool *from, const struct conf_pool *to)
{
    return to->redis_auth == NULL || (handoff_same_text(from->redis_auth, to->redis_auth) &&
                                      handoff_same_text(from->redis_user, to->redis_user));
}

static void handoff_drop(struct handoff_item *it)
{
    close(it->fd);
    free(it);
}

/* Queue the chain `first` at `box`'s successor (hub lock held); with no
 * successor, close them. Returns false when they were closed. */
static bool handoff_pass_locked(struct handoff_box *box, struct handoff_item *first)
{
    struct handoff_box *to = box->successor;
    if (to == NULL || to->nqueues == 0) {
        while (first != NULL) {
            struct handoff_item *next = first->next;
            handoff_drop(first);
            first = next;
        }
        return false;
    }
    bool same = handoff_same_auth(box->cp, to->cp);
    while (first != NULL) {
        struct handoff_item *it = first;
        first = it->next;
        it->next = NULL;
        it->authed = it->authed && same;
        unsigned q = to->next++ % to->nqueues;
        struct handoff_queue *dst = &to->queues[q];
        if (dst->tail != NULL) {
            dst->tail->next = it;
        } else {
            dst->head = it;
        }
        dst->tail = it;
        if (to->wake != NULL) {
            to->wake(to->wake_arg, q);
        }
    }
    return true;
}

bool handoff_push(struct handoff_box *box, struct handoff_item *it)
{
    it->next = NULL;
    pthread_mutex_lock(&box->hub->lock);
    bool queued = handoff_pass_locked(box, it);
    pthread_mutex_unlock(&box->hub->lock);
    return queued;
}

void handoff_conn(struct handoff_box *box, struct conn *c, struct ev_loop *loop, bool authed,
                  const struct buf_queue *in)
{
    struct handoff_item *it = handoff_item_new(c->io.fd, authed, in->bytes);
    if (it == NULL) {
        conn_close(c, loop);
        return;
    }
    buf_queue_peek(in, 0, it->data, it->len);
    (void)conn_detach(c, loop); /* before the new owner may add it */
    (void)handoff_push(box, it); /* else it closed the socket */
}

struct handoff_item *handoff_take(struct handoff_box *box, unsigned worker)
{
    if (worker >= box->nqueues) {
        return NULL;
    }
    pthread_mutex_lock(&box->hub->lock);
    struct handoff_item *first = box->queues[worker].head;
    box->queues[worker] = (struct handoff_queue){ NULL, NULL };
    pthread_mutex_unlock(&box->hub->lock);
    return first;
}

void handoff_forward(struct handoff_box *box, unsigned worker)
{
    if (box->queues == NULL) {
        return;
    }
    pthread_mutex_lock(&box->hub->lock);
    for (unsigned q = 0; q < box->nqueues; q++) {
        if (worker == q || worker == UINT32_MAX) {
            struct handoff_item *first = box->queues[q].head;
            box->queues[q] = (struct handoff_queue){ NULL, NULL };
            (void)handoff_pass_locked(box, first);
        }
    }
    pthread_mutex_unlock(&box->hub->lock);
}

void handoff_box_fini(struct handoff_box *box)
{
    if (box == NULL || box->queues == NULL) {
        return;
    }
    handoff_forward(box, UINT32_MAX);
    free(box->queues);
    box->queues = NULL;
    box->nqueues = 0;
}
