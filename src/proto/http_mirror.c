/* http_mirror: shadow copies of requests (see http_mirror.h). */
#include "http_mirror.h"
#include "../core/conn.h"
#include "../core/log.h"
#include "../core/net.h"
#include "../core/tm.h"
#include "../upstream/pool.h"
#include "../wk.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long a shadow may take when the pool sets no request timeout. */
enum { HTTP_MIRROR_DEFAULT_TIMEOUT_MS = 10000 };

struct http_mirror {
    struct wk_item item;        /* first: the worker's list links to it */
    struct pool *pool;
    struct wk *wk;
    size_t server;
    struct conn c;
    struct buf_queue out;       /* the copy, not yet written */
    bool connecting;
    struct http_mirror **slot;  /* the client's pointer to us, until detached */
    bool gone;
    char status[12];            /* start of the response: "HTTP/1.1 200" */
    size_t nstatus;
    uint64_t t_start_us;
    struct ev_timer timer;
    struct ev_defer kick;
    struct ev_defer release;
};

static stats_ctr *mirror_stat(struct http_mirror *m, enum stats_arm_field f)
{
    return stats_arm(m->pool->stats, m->pool->cp->narms, f);
}

static void mirror_release(struct ev_loop *loop, struct ev_defer *d)
{
    (void)loop;
    free(d->data);
}

/* End the copy; `what` is counted when it is a failure (SA_N: none). */
static void mirror_close(struct http_mirror *m, enum stats_arm_field what)
{
    if (m->gone) {
        return;
    }
    m->gone = true;
    if (m->slot != NULL) {
        *m->slot = NULL; /* the client must not feed a closed copy */
        m->slot = NULL;
    }
    if (what != SA_N) {
        stats_add(mirror_stat(m, what), 1);
    }
    if (!m->connecting) {
        pool_server_conn(m->pool, m->server, -1);
    }
    conn_close(&m->c, m->wk->loop);
    ev_timer_stop(m->wk->loop, &m->timer);
    buf_queue_clear(&m->out, &m->wk->bufs);
    wk_item_del(m->wk, &m->item);
    ev_defer(m->wk->loop, &m->release);
    pool_server_use(m->pool, m->server, -1); /* last: the slot may be recycled */
}

static void mirror_item_abort(struct wk_item *it)
{
    mirror_close((struct http_mirror *)it, SA_N);
}

static void mirror_timer(struct ev_loop *loop, struct ev_timer *t)
{
    (void)loop;
    mirror_close(t->data, SA_TIMEOUTS);
}

/* The shadow answered (or closed): count its status class and latency. */
static void mirror_done(struct http_mirror *m)
{
    static const enum stats_arm_field cls[] = { SA_RESPONSES_1XX, SA_RESPONSES_2XX,
                                                SA_RESPONSES_3XX, SA_RESPONSES_4XX,
                                                SA_RESPONSES_5XX };
    if (m->nstatus >= 10 && memcmp(m->status, "HTTP/", 5) == 0 && m->status[9] >= '1' &&
        m->status[9] <= '5') {
        stats_add(mirror_stat(m, cls[m->status[9] - '1']), 1);
        uint64_t us = tm_now_us() - m->t_start_us;
        stats_arm_latency(m->pool->stats, m->pool->cp->narms, us);
        stats_latency(m->pool->stats, m->server, us);
        mirror_close(m, SA_N);
        return;
    }
    mirror_close(m, SA_UPSTREAM_ERRORS);
}

static void mirror_pump(struct http_mirror *m)
{
    struct buf_pool *bufs = &m->wk->bufs;
    for (int rounds = 0; rounds < 64 && !m->gone; rounds++) {
        bool progress = false;
        if (m->out.bytes > 0 && m->c.writable) {
            ssize_t w = conn_write(&m->c, &m->out, bufs);
            if (w == -1) {
                mirror_close(m, SA_UPSTREAM_ERRORS);
                return;
            }
            progress = w > 0;
        }
        if (m->c.readable && !m->c.eof) {
            struct buf_queue in;
            buf_queue_init(&in);
            ssize_t r = conn_read(&m->c, &in, bufs, 1 << 16);
            if (r == -1) {
                buf_queue_clear(&in, bufs);
                mirror_close(m, SA_UPSTREAM_ERRORS);
                return;
            }
            size_t take = sizeof(m->status) - m->nstatus;
            if (take > in.bytes) {
                take = (size_t)in.bytes;
            }
            buf_queue_peek(&in, 0, m->status + m->nstatus, take);
            m->nstatus += take;
            buf_queue_clear(&in, bufs); /* the rest is discarded */
            progress = progress || r > 0 || m->c.eof;
        }
        if (m->c.eof) {
            mirror_done(m);
            return;
        }
        if (!progress) {
            return;
        }
    }
}

static void mirror_kicked(struct ev_loop *loop, struct ev_defer *d)
{
    (void)loop;
    struct http_mirror *m = d->data;
    if (!m->gone) {
        mirror_pump(m);
    }
}

static void mirror_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    struct http_mirror *m = io->data;
    conn_note_events(&m->c, events);
    if (m->connecting) {
        if (net_connect_result(io->fd) != 0) {
            stats_add(stats_server(m->pool->stats, m->server, SS_SERVER_ERR), 1);
            mirror_close(m, SA_UPSTREAM_ERRORS);
            return;
        }
        m->connecting = false;
        pool_server_conn(m->pool, m->server, 1);
        m->c.writable = true;
    }
    mirror_pump(m);
}

/* The mirror's usable servers: its configured ones, then its discovery's
 * slots. Returns the n-th of them (n modulo their number), or -1 if none. */
static int mirror_pick(const struct pool *p, uint64_t n)
{
    const struct conf_pool *cp = p->cp;
    const struct conf_discovery *d = conf_pool_discovery(cp, CONF_DISC_MIRROR);
    size_t dfirst = d != NULL ? d->first : 0, dn = d != NULL ? d->max_endpoints : 0;
    size_t usable = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t k = pass == 0 ? 0 : (size_t)(n % usable);
        for (size_t j = 0; j < cp->mirror_n + dn; j++) {
            size_t i = j < cp->mirror_n ? cp->mirror_first + j : dfirst + (j - cp->mirror_n);
            if (!pool_server_usable(p, i)) {
                continue;
            }
            if (pass == 1 && k-- == 0) {
                return (int)i;
            }
            usable += pass == 0;
        }
        if (usable == 0) {
            return -1;
        }
    }
    return -1;
}

struct http_mirror *http_mirror_start(struct pool *p, const struct http_head *h,
                                      const struct http_out *o, uint64_t roll,
                                      struct http_mirror **slot)
{
    const struct conf_pool *cp = p->cp;
    if (cp->mirror_percent == 0 || roll % 100 >= cp->mirror_percent) {
        return NULL;
    }
    struct wk *w = p->wk;
    stats_add(stats_arm(p->stats, cp->narms, SA_REQUESTS), 1);
    int pick = mirror_pick(p, roll / 100);
    size_t server = pick < 0 ? 0 : (size_t)pick;
    struct http_mirror *m = pick < 0 ? NULL : calloc(1, sizeof(*m));
    if (m == NULL) {
        stats_add(stats_arm(p->stats, cp->narms, SA_DROPPED), 1);
        return NULL;
    }
    m->pool = p;
    m->wk = w;
    m->server = server;
    m->t_start_us = tm_now_us();
    buf_queue_init(&m->out);
    m->timer = (struct ev_timer){ .fn = mirror_timer, .data = m };
    m->kick = (struct ev_defer){ .fn = mirror_kicked, .data = m };
    m->release = (struct ev_defer){ .fn = mirror_release, .data = m };
    struct http_out mo = *o;
    mo.close = true;
    mo.extra_name = NULL;
    bool done = false;
    int fd = -1;
    if (http_head_write_request(h, &mo, &m->out, &w->bufs) == -1 ||
        (fd = net_connect(&p->servers[server].addr, &done)) == -1 ||
        conn_open(&m->c, w->loop, fd, mirror_io, m) == -1) {
        if (fd != -1) {
            close(fd);
        }
        stats_add(stats_arm(p->stats, cp->narms, SA_UPSTREAM_ERRORS), 1);
        buf_queue_clear(&m->out, &w->bufs);
        free(m);
        return NULL;
    }
    pool_server_use(p, server, 1);
    m->connecting = !done;
    if (done) {
        pool_server_conn(p, server, 1);
        m->c.writable = true;
        ev_defer(w->loop, &m->kick);
    }
    uint64_t t = cp->timeout_request ? cp->timeout_request : HTTP_MIRROR_DEFAULT_TIMEOUT_MS;
    ev_timer_start(w->loop, &m->timer, t);
    wk_item_add(w, &m->item, mirror_item_abort, NULL);
    m->slot = slot;
    *slot = m;
    return m;
}

bool http_mirror_body(struct http_mirror *m, const char *data, size_t n)
{
    if (m->out.bytes + n > m->wk->queue_limit ||
        buf_queue_append(&m->out, &m->wk->bufs, data, n) == -1) {
        mirror_close(m, SA_DROPPED);
        return false;
    }
    if (!m->connecting) {
        ev_defer(m->wk->loop, &m->kick);
    }
    return true;
}

void http_mirror_detach(struct http_mirror *m)
{
    m->slot = NULL;
}

void http_mirror_abort(struct http_mirror *m)
{
    mirror_close(m, SA_DROPPED);
}
