/* redis: the sharding Redis proxy (see redis.h for the picture). */
#include "redis.h"
#include "redis_cmd.h"
#include "resp.h"
#include "../core/conn.h"
#include "../core/log.h"
#include "../core/net.h"
#include "../core/tm.h"
#include "../upstream/pool.h"
#include "../upstream/ring.h"
#include "../version.h"
#include "../wk.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    REDIS_MAX_PENDING = 4096, /* requests in flight per client before reads pause */
    REDIS_SCRATCH_MIN = 256,
};

struct redis_pool;
struct redis_client;
struct redis_sconn;

struct redis_msg {
    struct redis_msg *cnext;      /* client order */
    struct redis_msg *snext;      /* server connection FIFO */
    struct redis_client *client;  /* NULL once the client is gone */
    struct redis_msg *parent;     /* set on fragments */
    struct buf_queue reply;
    uint64_t sent_at;             /* ms, loop time: queued, then written */
    uint64_t sent_us;             /* us, for the latency histogram */
    uint64_t req_bytes;           /* bytes of this request on its connection */
    uint64_t end;                 /* offset just past them in the connection's stream */
    bool done;
    bool internal;                /* legate's own AUTH/SELECT to a server */
    bool failed;                  /* parent: a fragment failed */
    uint8_t kind;                 /* parent: enum redis_kind, to merge */
    uint32_t nfrags;              /* parent: fragments not yet answered */
    uint32_t nkeys;               /* parent: keys of the command */
    struct redis_msg **frags;     /* parent: every fragment, in server order */
    uint32_t nallfrags;
    int64_t sum;                  /* parent: SPLIT_SUM total */
    uint32_t *keyidx;             /* fragment: original key positions */
    uint32_t nfragkeys;
};

enum redis_sc_state { SC_DOWN, SC_CONNECTING, SC_UP };

struct redis_sconn {
    struct conn c;
    struct redis_pool *rp;
    size_t server;                /* index in the pool's servers */
    enum redis_sc_state state;
    struct buf_queue out;
    struct buf_queue in;
    struct buf_cursor cur;        /* how far `in` has been parsed */
    struct resp_rsp rsp;
    struct redis_msg *head;       /* FIFO of messages awaiting a reply */
    struct redis_msg *tail;
    struct redis_msg *unsent;     /* first message not fully written */
    uint64_t appended;            /* request bytes queued since connect */
    uint64_t written;             /* request bytes written since connect */
    struct ev_timer timer;        /* connect, then request timeout */
    struct ev_defer again;        /* pump after a failure, outside the event */
};

struct redis_server {
    struct redis_pool *rp;
    size_t index;
    struct redis_sconn *conns;
    unsigned nconns;
    unsigned next;
    unsigned failures;            /* consecutive, reset by any reply */
    bool ejected;                 /* out of the ring until `readmit` fires */
    struct ev_timer readmit;
};

struct redis_pool {
    struct pool *pool;
    struct wk *wk;
    const struct conf_pool *cp;
    struct ring ring;
    struct redis_server *servers;
    size_t nservers;
    bool *live;                   /* per server: in the ring (not ejected) */
    struct resp_limits limits;
    uint8_t *scratch;             /* contiguous copy of a key split across chunks */
    size_t scratch_cap;
};

struct redis_client {
    struct wk_item item;          /* first: the worker's list links to it */
    struct redis_pool *rp;
    struct conn c;
    struct buf_queue in;
    struct buf_queue out;
    struct buf_cursor cur;
    struct resp_req req;
    struct redis_msg *head;
    struct redis_msg *tail;
    unsigned pending;
    bool quit;                    /* close once every reply is written */
    bool gone;
    bool authed;                  /* AUTH done, or no password configured */
    bool draining;                /* legate is stopping: close when idle */
    struct ev_defer flush;        /* write replies once per loop iteration */
    struct ev_defer release;
};

static void redis_sconn_pump(struct redis_sconn *sc);
static void redis_client_pump(struct redis_client *cl);
static void redis_msg_complete(struct redis_pool *rp, struct redis_msg *m);

/* ---------------------------------------------------------------- */
/* messages                                                          */

static struct redis_msg *redis_msg_new(struct redis_client *cl)
{
    struct redis_msg *m = calloc(1, sizeof(*m));
    if (m != NULL) {
        m->client = cl;
        buf_queue_init(&m->reply);
    }
    return m;
}

static void redis_msg_free(struct redis_pool *rp, struct redis_msg *m)
{
    if (m == NULL) {
        return;
    }
    for (uint32_t i = 0; i < m->nallfrags; i++) {
        redis_msg_free(rp, m->frags[i]);
    }
    free(m->frags);
    free(m->keyidx);
    buf_queue_clear(&m->reply, &rp->wk->bufs);
    free(m);
}

static void redis_reply_text(struct redis_pool *rp, struct redis_msg *m, const char *text)
{
    buf_queue_clear(&m->reply, &rp->wk->bufs);
    if (buf_queue_append(&m->reply, &rp->wk->bufs, text, strlen(text)) == -1) {
        log_error(rp->wk->log, "pool '%s': out of memory for a reply", rp->cp->name);
    }
}

static void redis_reply_fmt(struct redis_pool *rp, struct redis_msg *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void redis_reply_fmt(struct redis_pool *rp, struct redis_msg *m, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    redis_reply_text(rp, m, text);
}

/* Answer `m` with an error of legate's and complete it. */
static void redis_msg_error(struct redis_pool *rp, struct redis_msg *m, const char *why)
{
    redis_reply_fmt(rp, m, "-ERR legate: %s\r\n", why);
    if (m->parent != NULL) {
        m->parent->failed = true;
    }
    redis_msg_complete(rp, m);
}

/* ---------------------------------------------------------------- */
/* clients: queueing and writing replies in order                    */

static void redis_client_link(struct redis_client *cl, struct redis_msg *m)
{
    if (cl->tail != NULL) {
        cl->tail->cnext = m;
    } else {
        cl->head = m;
    }
    cl->tail = m;
    cl->pending++;
}

/* Move finished replies at the head of the client's order to its output. */
static void redis_client_collect(struct redis_client *cl)
{
    struct redis_pool *rp = cl->rp;
    while (cl->head != NULL && cl->head->done) {
        struct redis_msg *m = cl->head;
        cl->head = m->cnext;
        if (cl->head == NULL) {
            cl->tail = NULL;
        }
        cl->pending--;
        buf_queue_splice(&cl->out, &m->reply);
        redis_msg_free(rp, m);
    }
}

/* ---------------------------------------------------------------- */
/* merging fragments                                                 */

/* Length of the one RESP value starting `off` bytes into `q`, or -1. */
static int redis_frame(const struct buf_queue *q, uint64_t off, uint64_t *len)
{
    struct resp_rsp r;
    resp_rsp_init(&r);
    for (const struct buf *b = buf_queue_find(q, &off); b != NULL; b = b->next, off = 0) {
        size_t used;
        int rc = resp_rsp_feed(&r, b->pos + off, buf_unread(b) - (size_t)off, &used,
                               &resp_default_limits);
        if (rc == RESP_DONE) {
            *len = r.size;
            return 0;
        }
        if (rc == RESP_ERROR) {
            return -1;
        }
    }
    return -1;
}

/* Header length of an array reply "*N\r\n" at the head of `q`, or -1. */
static int redis_array_header(const struct buf_queue *q, uint64_t *hdr)
{
    char h[32];
    size_t n = q->bytes < sizeof(h) ? (size_t)q->bytes : sizeof(h);
    buf_queue_peek(q, 0, h, n);
    if (n < 4 || h[0] != '*') {
        return -1;
    }
    for (size_t i = 1; i + 1 < n; i++) {
        if (h[i] == '\r' && h[i + 1] == '\n') {
            *hdr = i + 2;
            return 0;
        }
    }
    return -1;
}

/* MGET: the values of every fragment, put back in the order of the keys. */
static int redis_merge_values(struct redis_pool *rp, struct redis_msg *p)
{
    struct buf_pool *bufs = &rp->wk->bufs;
    uint64_t *offs = calloc(p->nkeys, sizeof(*offs));
    uint64_t *lens = calloc(p->nkeys, sizeof(*lens));
    struct redis_msg **from = calloc(p->nkeys, sizeof(*from));
    int rc = -1;
    if (offs == NULL || lens == NULL || from == NULL) {
        goto out;
    }
    for (uint32_t f = 0; f < p->nallfrags; f++) {
        struct redis_msg *fr = p->frags[f];
        uint64_t at;
        if (redis_array_header(&fr->reply, &at) == -1) {
            goto out;
        }
        for (uint32_t k = 0; k < fr->nfragkeys; k++) {
            uint64_t len;
            if (redis_frame(&fr->reply, at, &len) == -1) {
                goto out;
            }
            uint32_t slot = fr->keyidx[k];
            offs[slot] = at;
            lens[slot] = len;
            from[slot] = fr;
            at += len;
        }
    }
    char hdr[32];
    int n = snprintf(hdr, sizeof(hdr), "*%" PRIu32 "\r\n", p->nkeys);
    if (buf_queue_append(&p->reply, bufs, hdr, (size_t)n) == -1) {
        goto out;
    }
    for (uint32_t i = 0; i < p->nkeys; i++) {
        if (from[i] == NULL ||
            buf_queue_append_range(&p->reply, bufs, &from[i]->reply, offs[i], lens[i]) == -1) {
            goto out;
        }
    }
    rc = 0;
out:
    free(offs);
    free(lens);
    free(from);
    return rc;
}

/* All fragments of `p` are answered: build its one reply. */
static void redis_merge(struct redis_pool *rp, struct redis_msg *p)
{
    if (p->failed) {
        /* Pass on the first error a fragment got. */
        for (uint32_t i = 0; i < p->nallfrags; i++) {
            struct redis_msg *fr = p->frags[i];
            char first;
            if (fr->reply.bytes > 0 && (buf_queue_peek(&fr->reply, 0, &first, 1), first == '-')) {
                buf_queue_clear(&p->reply, &rp->wk->bufs);
                buf_queue_splice(&p->reply, &fr->reply);
                return;
            }
        }
        redis_reply_text(rp, p, "-ERR legate: a fragment of the command failed\r\n");
        return;
    }
    if (p->kind == REDIS_SPLIT_SUM) {
        redis_reply_fmt(rp, p, ":%" PRId64 "\r\n", p->sum);
    } else if (p->kind == REDIS_SPLIT_PAIRS) {
        redis_reply_text(rp, p, "+OK\r\n");
    } else if (redis_merge_values(rp, p) == -1) {
        redis_reply_text(rp, p, "-ERR legate: could not merge the replies\r\n");
    }
}

/* A fragment's reply arrived: check it, account for it, merge when last. */
static void redis_fragment_done(struct redis_pool *rp, struct redis_msg *fr)
{
    struct redis_msg *p = fr->parent;
    struct resp_rsp r;
    resp_rsp_init(&r);
    uint64_t len;
    char first = 0;
    if (fr->reply.bytes > 0) {
        buf_queue_peek(&fr->reply, 0, &first, 1);
    }
    if (first == '-') {
        p->failed = true;
    } else if (p->kind == REDIS_SPLIT_SUM) {
        char num[32];
        size_t n = fr->reply.bytes < sizeof(num) - 1 ? (size_t)fr->reply.bytes : sizeof(num) - 1;
        buf_queue_peek(&fr->reply, 0, num, n);
        num[n] = '\0';
        if (first != ':' || redis_frame(&fr->reply, 0, &len) == -1) {
            p->failed = true;
        } else {
            p->sum += strtoll(num + 1, NULL, 10);
        }
    }
    if (--p->nfrags == 0) {
        redis_merge(rp, p);
        redis_msg_complete(rp, p);
    }
}

/* `m` has its reply (or error): hand it on. */
static void redis_msg_complete(struct redis_pool *rp, struct redis_msg *m)
{
    m->done = true;
    if (m->parent != NULL) {
        redis_fragment_done(rp, m);
        return;
    }
    struct redis_client *cl = m->client;
    if (cl == NULL) {
        redis_msg_free(rp, m); /* nobody waits: drop */
        return;
    }
    if (m == cl->head) {
        /* Replies for this client may be arriving in a batch: write them
         * together at the end of the loop iteration, in one writev. */
        ev_defer(rp->wk->loop, &cl->flush);
    }
}

/* ---------------------------------------------------------------- */
/* server connections                                                */

static stats_ctr *redis_sstat(struct redis_sconn *sc, enum stats_server_field f)
{
    return stats_server(sc->rp->pool->stats, sc->server, f);
}

/* Requests move from in_queue (not yet written) to out_queue (awaiting a
 * reply) as their last byte is written, as nutcracker counts them. */
static void redis_sconn_wrote(struct redis_sconn *sc, uint64_t n)
{
    sc->written += n;
    while (sc->unsent != NULL && sc->unsent->end <= sc->written) {
        struct redis_msg *m = sc->unsent;
        /* The timeout runs from now that it is sent; until then from when
         * it was queued, so a server that stops reading still times out. */
        m->sent_at = ev_now(sc->rp->wk->loop);
        stats_add(redis_sstat(sc, SS_IN_QUEUE), -1);
        stats_add(redis_sstat(sc, SS_IN_QUEUE_BYTES), -(int64_t)m->req_bytes);
        stats_add(redis_sstat(sc, SS_OUT_QUEUE), 1);
        stats_add(redis_sstat(sc, SS_OUT_QUEUE_BYTES), (int64_t)m->req_bytes);
        sc->unsent = m->snext;
    }
}

/* Account for `m` leaving the connection (answered or failed). */
static void redis_sconn_forget(struct redis_sconn *sc, struct redis_msg *m)
{
    bool sent = m->end <= sc->written;
    stats_add(redis_sstat(sc, sent ? SS_OUT_QUEUE : SS_IN_QUEUE), -1);
    stats_add(redis_sstat(sc, sent ? SS_OUT_QUEUE_BYTES : SS_IN_QUEUE_BYTES),
              -(int64_t)m->req_bytes);
    if (sc->unsent == m) {
        sc->unsent = m->snext;
    }
}

static void redis_sconn_io(struct ev_loop *loop, struct ev_io *io, unsigned events);

static const char *redis_server_spec(const struct redis_sconn *sc)
{
    return sc->rp->cp->servers[sc->server].spec;
}

/* Rebuild the ring from the servers not ejected. */
static void redis_ring_rebuild(struct redis_pool *rp)
{
    struct ring fresh;
    if (ring_build(&fresh, rp->cp, rp->live) == -1) {
        log_error(rp->wk->log, "pool '%s': out of memory rebuilding the ring; keeping the "
                  "old one", rp->cp->name);
        return;
    }
    ring_free(&rp->ring);
    rp->ring = fresh;
}

static void redis_server_readmit(struct ev_loop *loop, struct ev_timer *t)
{
    (void)loop;
    struct redis_server *s = t->data;
    struct redis_pool *rp = s->rp;
    s->ejected = false;
    rp->live[s->index] = true;
    redis_ring_rebuild(rp);
    log_notice(rp->wk->log, "pool '%s': server %s back in the ring after %llu ms",
               rp->cp->name, rp->cp->servers[s->index].spec,
               (unsigned long long)rp->cp->server_retry_timeout);
}

/* A connection to server `s` failed. With auto_eject_hosts, after
 * server_failure_limit failures in a row the server leaves the ring (its
 * keys go to the others) for server_retry_timeout, as in twemproxy. */
static void redis_server_failed(struct redis_server *s)
{
    struct redis_pool *rp = s->rp;
    const struct conf_pool *cp = rp->cp;
    s->failures++;
    if (!cp->auto_eject_hosts || s->ejected || s->failures < cp->server_failure_limit) {
        return;
    }
    s->ejected = true;
    rp->live[s->index] = false;
    redis_ring_rebuild(rp);
    stats_add(&rp->pool->stats->f[SP_SERVER_EJECTS], 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    stats_set(stats_server(rp->pool->stats, s->index, SS_SERVER_EJECTED_AT),
              (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
    ev_timer_start(rp->wk->loop, &s->readmit, cp->server_retry_timeout);
    log_warn(rp->wk->log, "pool '%s': server %s ejected for %llu ms after %u failures",
             cp->name, cp->servers[s->index].spec,
             (unsigned long long)cp->server_retry_timeout, s->failures);
}

/* Close the connection and answer every message it held with `why`;
 * `what` is the counter it adds to (server_eof, _err or _timedout). */
static void redis_sconn_fail(struct redis_sconn *sc, enum stats_server_field what,
                             const char *why)
{
    struct redis_pool *rp = sc->rp;
    struct ev_loop *loop = rp->wk->loop;
    if (sc->head != NULL || sc->state != SC_DOWN) {
        log_warn(rp->wk->log, "pool '%s': server %s: %s", rp->cp->name, redis_server_spec(sc),
                 why);
        stats_add(redis_sstat(sc, what), 1);
        redis_server_failed(&rp->servers[sc->server]);
    }
    if (sc->state == SC_UP) {
        pool_server_conn(rp->pool, sc->server, -1);
    }
    conn_close(&sc->c, loop);
    ev_timer_stop(loop, &sc->timer);
    sc->state = SC_DOWN;
    buf_queue_clear(&sc->out, &rp->wk->bufs);
    buf_queue_clear(&sc->in, &rp->wk->bufs);
    buf_cursor_reset(&sc->cur, &sc->in);
    resp_rsp_init(&sc->rsp);
    struct redis_msg *m = sc->head;
    sc->head = sc->tail = NULL;
    char text[128];
    snprintf(text, sizeof(text), "server %s %s", redis_server_spec(sc), why);
    while (m != NULL) {
        struct redis_msg *next = m->snext;
        redis_sconn_forget(sc, m);
        m->snext = NULL;
        if (!m->internal) {
            stats_add(&rp->pool->stats->f[SP_FORWARD_ERROR], 1);
        }
        redis_msg_error(rp, m, text);
        m = next;
    }
    sc->unsent = NULL;
    sc->appended = sc->written = 0;
}

static void redis_sconn_arm_timeout(struct redis_sconn *sc)
{
    uint64_t t = sc->rp->cp->timeout_request;
    struct ev_loop *loop = sc->rp->wk->loop;
    if (t == 0 || sc->head == NULL) {
        ev_timer_stop(loop, &sc->timer);
        return;
    }
    uint64_t now = ev_now(loop);
    uint64_t due = sc->head->sent_at + t;
    ev_timer_start(loop, &sc->timer, due > now ? due - now : 0);
}

static void redis_sconn_timer(struct ev_loop *loop, struct ev_timer *t)
{
    struct redis_sconn *sc = t->data;
    uint64_t limit = sc->rp->cp->timeout_request;
    if (sc->state == SC_CONNECTING) {
        redis_sconn_fail(sc, SS_SERVER_TIMEDOUT, "connect timed out");
        return;
    }
    if (sc->head != NULL && ev_now(loop) - sc->head->sent_at >= limit) {
        /* Replies on this connection can no longer be matched: start over. */
        redis_sconn_fail(sc, SS_SERVER_TIMEDOUT, "timed out");
        return;
    }
    redis_sconn_arm_timeout(sc);
}

static int redis_append_bulk(struct redis_pool *rp, struct buf_queue *q, const void *data,
                             size_t len);

/* Put a handshake command in front of everything queued on `sc`, with an
 * internal message first in its FIFO to take the reply. */
static int redis_sconn_prepend(struct redis_sconn *sc, const char *const *argv, int argc)
{
    struct redis_pool *rp = sc->rp;
    struct buf_queue q;
    buf_queue_init(&q);
    char hdr[16];
    int n = snprintf(hdr, sizeof(hdr), "*%d\r\n", argc);
    int bad = buf_queue_append(&q, &rp->wk->bufs, hdr, (size_t)n) == -1;
    for (int i = 0; i < argc && !bad; i++) {
        bad = redis_append_bulk(rp, &q, argv[i], strlen(argv[i])) == -1;
    }
    struct redis_msg *m = bad ? NULL : redis_msg_new(NULL);
    if (m == NULL) {
        buf_queue_clear(&q, &rp->wk->bufs);
        return -1;
    }
    m->internal = true;
    m->sent_at = ev_now(rp->wk->loop);
    buf_queue_splice(&q, &sc->out);
    sc->out = q;
    m->snext = sc->head;
    sc->head = m;
    if (sc->tail == NULL) {
        sc->tail = m;
    }
    /* Nothing was written on this connection yet: renumber the stream. */
    m->req_bytes = q.bytes - sc->appended;
    sc->appended = 0;
    for (struct redis_msg *x = sc->head; x != NULL; x = x->snext) {
        sc->appended += x->req_bytes;
        x->end = sc->appended;
    }
    sc->unsent = sc->head;
    stats_add(redis_sstat(sc, SS_IN_QUEUE), 1);
    stats_add(redis_sstat(sc, SS_IN_QUEUE_BYTES), (int64_t)m->req_bytes);
    return 0;
}

/* AUTH and SELECT, in that order, ahead of the clients' requests. */
static int redis_sconn_handshake(struct redis_sconn *sc)
{
    const struct conf_pool *cp = sc->rp->cp;
    if (cp->redis_db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%u", cp->redis_db);
        const char *const select[] = { "SELECT", db };
        if (redis_sconn_prepend(sc, select, 2) == -1) {
            return -1;
        }
    }
    if (cp->redis_auth != NULL) {
        const char *const auth2[] = { "AUTH", cp->redis_auth };
        const char *const auth3[] = { "AUTH", cp->redis_user ? cp->redis_user : "", cp->redis_auth };
        if (cp->redis_user != NULL ? redis_sconn_prepend(sc, auth3, 3) == -1
                                   : redis_sconn_prepend(sc, auth2, 2) == -1) {
            return -1;
        }
    }
    return 0;
}

static int redis_sconn_connect(struct redis_sconn *sc)
{
    struct redis_pool *rp = sc->rp;
    const struct conf_server *s = &rp->cp->servers[sc->server];
    bool done = false;
    int fd = net_connect(&s->addr, &done);
    if (fd == -1) {
        return -1;
    }
    if (rp->cp->tcpkeepalive) {
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    }
    if (conn_open(&sc->c, rp->wk->loop, fd, redis_sconn_io, sc) == -1) {
        close(fd);
        return -1;
    }
    if (redis_sconn_handshake(sc) == -1) {
        conn_close(&sc->c, rp->wk->loop);
        errno = ENOMEM;
        return -1;
    }
    sc->state = done ? SC_UP : SC_CONNECTING;
    if (done) {
        pool_server_conn(rp->pool, sc->server, 1);
    }
    if (!done && rp->cp->timeout_request != 0) {
        ev_timer_start(rp->wk->loop, &sc->timer, rp->cp->timeout_request);
    }
    return 0;
}

/* Queue `m` for a reply; its `bytes` of request are already in sc->out. */
static void redis_sconn_push(struct redis_sconn *sc, struct redis_msg *m, uint64_t bytes)
{
    m->sent_at = ev_now(sc->rp->wk->loop);
    m->sent_us = tm_now_us();
    m->snext = NULL;
    m->req_bytes = bytes;
    sc->appended += bytes;
    m->end = sc->appended;
    if (sc->unsent == NULL) {
        sc->unsent = m;
    }
    stats_add(redis_sstat(sc, SS_REQUESTS), 1);
    stats_add(redis_sstat(sc, SS_REQUEST_BYTES), (int64_t)bytes);
    stats_add(redis_sstat(sc, SS_IN_QUEUE), 1);
    stats_add(redis_sstat(sc, SS_IN_QUEUE_BYTES), (int64_t)bytes);
    if (sc->tail != NULL) {
        sc->tail->snext = m;
    } else {
        sc->head = m;
        if (sc->state == SC_UP) {
            redis_sconn_arm_timeout(sc);
        }
    }
    sc->tail = m;
}

static void redis_sconn_again(struct ev_loop *loop, struct ev_defer *d)
{
    (void)loop;
    redis_sconn_pump(d->data);
}

/* Send what is queued (connecting first if needed). Failures answer the
 * queued messages; they run from a deferred callback so a client never
 * sees its own request completed inside the call that queued it. */
static void redis_sconn_kick(struct redis_sconn *sc)
{
    ev_defer(sc->rp->wk->loop, &sc->again);
}

/* Frame replies in sc->in and give each to the oldest waiting message. */
static void redis_sconn_replies(struct redis_sconn *sc)
{
    struct redis_pool *rp = sc->rp;
    for (;;) {
        size_t avail = buf_cursor_avail(&sc->cur, &sc->in);
        if (avail == 0) {
            return;
        }
        size_t used;
        int rc = resp_rsp_feed(&sc->rsp, sc->cur.p, avail, &used, &rp->limits);
        sc->cur.p += used;
        if (rc == RESP_AGAIN) {
            continue;
        }
        if (rc == RESP_ERROR) {
            redis_sconn_fail(sc, SS_SERVER_ERR, sc->rsp.error);
            return;
        }
        struct redis_msg *m = sc->head;
        if (m == NULL) {
            redis_sconn_fail(sc, SS_SERVER_ERR, "sent a reply nobody asked for");
            return;
        }
        uint64_t size = sc->rsp.size;
        redis_sconn_forget(sc, m);
        rp->servers[sc->server].failures = 0;
        stats_latency(rp->pool->stats, sc->server, tm_now_us() - m->sent_us);
        stats_add(redis_sstat(sc, SS_RESPONSES), 1);
        stats_add(redis_sstat(sc, SS_RESPONSE_BYTES), (int64_t)size);
        sc->head = m->snext;
        if (sc->head == NULL) {
            sc->tail = NULL;
        }
        m->snext = NULL;
        if (m->internal) {
            char first = 0;
            buf_queue_peek(&sc->in, 0, &first, 1);
            buf_queue_consume(&sc->in, &rp->wk->bufs, (size_t)size);
            buf_cursor_reset(&sc->cur, &sc->in);
            resp_rsp_init(&sc->rsp);
            redis_msg_free(rp, m);
            if (first == '-') {
                redis_sconn_fail(sc, SS_SERVER_ERR, "refused legate's AUTH or SELECT (check "
                                                    "redis_auth, redis_user, redis_db)");
                return;
            }
            continue;
        }
        if (m->client != NULL || m->parent != NULL) {
            if (buf_queue_append_range(&m->reply, &rp->wk->bufs, &sc->in, 0, size) == -1) {
                redis_reply_text(rp, m, "-ERR legate: out of memory\r\n");
            }
        }
        buf_queue_consume(&sc->in, &rp->wk->bufs, (size_t)size);
        buf_cursor_reset(&sc->cur, &sc->in);
        resp_rsp_init(&sc->rsp);
        redis_sconn_arm_timeout(sc);
        redis_msg_complete(rp, m);
    }
}

static void redis_sconn_pump(struct redis_sconn *sc)
{
    struct redis_pool *rp = sc->rp;
    if (sc->state == SC_DOWN) {
        if (sc->head == NULL) {
            return;
        }
        if (redis_sconn_connect(sc) == -1) {
            char why[128];
            snprintf(why, sizeof(why), "unavailable (%s)", strerror(errno));
            redis_sconn_fail(sc, SS_SERVER_ERR, why);
            return;
        }
    }
    if (sc->state != SC_UP) {
        return;
    }
    for (;;) {
        bool moved = false;
        if (sc->c.writable && sc->out.bytes > 0) {
            ssize_t w = conn_write(&sc->c, &sc->out, &rp->wk->bufs);
            if (w == -1) {
                redis_sconn_fail(sc, SS_SERVER_ERR, "unavailable (write failed)");
                return;
            }
            redis_sconn_wrote(sc, (uint64_t)w);
            moved = w > 0;
        }
        if (sc->c.readable && !sc->c.eof) {
            size_t limit = sc->in.bytes + rp->wk->queue_limit;
            ssize_t r = conn_read(&sc->c, &sc->in, &rp->wk->bufs, limit);
            if (r == -1) {
                redis_sconn_fail(sc, SS_SERVER_ERR, "unavailable (connection reset)");
                return;
            }
            if (r > 0) {
                moved = true;
                redis_sconn_replies(sc);
                if (sc->state != SC_UP) {
                    return;
                }
            }
        }
        if (sc->c.eof) {
            redis_sconn_fail(sc, SS_SERVER_EOF, "unavailable (closed the connection)");
            return;
        }
        if (!moved) {
            return;
        }
    }
}

static void redis_sconn_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    struct redis_sconn *sc = io->data;
    conn_note_events(&sc->c, events);
    if (sc->state == SC_CONNECTING) {
        int err = net_connect_result(io->fd);
        if (err != 0) {
            char why[128];
            snprintf(why, sizeof(why), "unavailable (%s)", strerror(err));
            redis_sconn_fail(sc, SS_SERVER_ERR, why);
            return;
        }
        sc->state = SC_UP;
        pool_server_conn(sc->rp->pool, sc->server, 1);
        ev_timer_stop(sc->rp->wk->loop, &sc->timer);
        redis_sconn_arm_timeout(sc);
    }
    redis_sconn_pump(sc);
}

/* The connection to use for server `i` (round robin over its conns). */
static struct redis_sconn *redis_pick_conn(struct redis_pool *rp, size_t i)
{
    struct redis_server *s = &rp->servers[i];
    struct redis_sconn *sc = &s->conns[s->next];
    s->next = (s->next + 1) % s->nconns;
    return sc;
}

/* ---------------------------------------------------------------- */
/* routing                                                           */

/* The bytes of argument `a` of the request at the head of cl->in,
 * contiguous (pointing into the buffer, or copied to scratch). */
static const uint8_t *redis_arg(struct redis_client *cl, const struct resp_arg *a)
{
    uint64_t off = a->off;
    const struct buf *b = buf_queue_find(&cl->in, &off);
    if (b != NULL && off + a->len <= buf_unread(b)) {
        return b->pos + off;
    }
    struct redis_pool *rp = cl->rp;
    if (a->len > rp->scratch_cap) {
        size_t cap = a->len > REDIS_SCRATCH_MIN ? (size_t)a->len : REDIS_SCRATCH_MIN;
        uint8_t *s = realloc(rp->scratch, cap);
        if (s == NULL) {
            return NULL;
        }
        rp->scratch = s;
        rp->scratch_cap = cap;
    }
    buf_queue_peek(&cl->in, a->off, rp->scratch, (size_t)a->len);
    return rp->scratch;
}

static int redis_key_server(struct redis_client *cl, const struct resp_arg *a)
{
    const uint8_t *k = redis_arg(cl, a);
    if (k == NULL) {
        return -1;
    }
    return ring_pick(&cl->rp->ring, k, (size_t)a->len, bal_random(&cl->rp->pool->bal));
}

/* Copy the whole request at the head of cl->in to server `srv`. */
static int redis_forward(struct redis_client *cl, struct redis_msg *m, int srv)
{
    struct redis_pool *rp = cl->rp;
    struct redis_sconn *sc = redis_pick_conn(rp, (size_t)srv);
    if (buf_queue_append_range(&sc->out, &rp->wk->bufs, &cl->in, 0, cl->req.size) == -1) {
        return -1;
    }
    redis_sconn_push(sc, m, cl->req.size);
    redis_sconn_kick(sc);
    return 0;
}

static int redis_append_bulk(struct redis_pool *rp, struct buf_queue *q, const void *data,
                             size_t len)
{
    char hdr[32];
    int n = snprintf(hdr, sizeof(hdr), "$%zu\r\n", len);
    return buf_queue_append(q, &rp->wk->bufs, hdr, (size_t)n) == -1 ||
                   buf_queue_append(q, &rp->wk->bufs, data, len) == -1 ||
                   buf_queue_append(q, &rp->wk->bufs, "\r\n", 2) == -1
               ? -1
               : 0;
}

/* Split a multi-key command into one fragment per server. `per` is 1 for
 * keys alone, 2 for key/value pairs (MSET). */
static int redis_split(struct redis_client *cl, struct redis_msg *m, const struct redis_cmd *cmd,
                       const int *where, uint32_t nkeys, uint32_t per)
{
    struct redis_pool *rp = cl->rp;
    const struct resp_req *r = &cl->req;
    m->kind = cmd->kind;
    m->nkeys = nkeys;
    uint32_t *count = calloc(rp->nservers, sizeof(*count));
    m->frags = calloc(rp->nservers, sizeof(*m->frags));
    if (count == NULL || m->frags == NULL) {
        free(count);
        return -1;
    }
    for (uint32_t k = 0; k < nkeys; k++) {
        count[where[k]]++;
    }
    for (size_t s = 0; s < rp->nservers; s++) {
        if (count[s] == 0) {
            continue;
        }
        struct redis_msg *fr = redis_msg_new(NULL);
        if (fr == NULL || (fr->keyidx = calloc(count[s], sizeof(uint32_t))) == NULL) {
            free(fr);
            free(count);
            return -1;
        }
        fr->parent = m;
        m->frags[m->nallfrags++] = fr;
        m->nfrags++;
        struct redis_sconn *sc = redis_pick_conn(rp, s);
        uint64_t before = sc->out.bytes;
        char hdr[32];
        int n = snprintf(hdr, sizeof(hdr), "*%" PRIu32 "\r\n", 1 + count[s] * per);
        int bad = buf_queue_append(&sc->out, &rp->wk->bufs, hdr, (size_t)n) == -1 ||
                  redis_append_bulk(rp, &sc->out, cmd->name, strlen(cmd->name)) == -1;
        for (uint32_t k = 0; k < nkeys && !bad; k++) {
            if ((size_t)where[k] != s) {
                continue;
            }
            fr->keyidx[fr->nfragkeys++] = k;
            for (uint32_t j = 0; j < per && !bad; j++) {
                const struct resp_arg *a = &r->args[1 + k * per + j];
                n = snprintf(hdr, sizeof(hdr), "$%" PRIu64 "\r\n", a->len);
                bad = buf_queue_append(&sc->out, &rp->wk->bufs, hdr, (size_t)n) == -1 ||
                      buf_queue_append_range(&sc->out, &rp->wk->bufs, &cl->in, a->off,
                                             a->len) == -1 ||
                      buf_queue_append(&sc->out, &rp->wk->bufs, "\r\n", 2) == -1;
            }
        }
        if (bad) {
            free(count);
            return -1;
        }
        stats_add(&rp->pool->stats->f[SP_FRAGMENTS], 1);
        redis_sconn_push(sc, fr, sc->out.bytes - before);
        redis_sconn_kick(sc);
    }
    free(count);
    return 0;
}

/* Whether argument `a` of the current request equals `s`, compared in
 * time independent of where they differ. */
static bool redis_arg_equals(struct redis_client *cl, const struct resp_arg *a, const char *s)
{
    size_t n = strlen(s);
    const uint8_t *v = redis_arg(cl, a);
    if (v == NULL || a->len != n) {
        return false;
    }
    uint8_t diff = 0;
    for (size_t i = 0; i < n; i++) {
        diff |= (uint8_t)(v[i] ^ (uint8_t)s[i]);
    }
    return diff == 0;
}

/* Check AUTH [user] password given in `count` arguments starting at
 * argument `at`; sets the reply (unless ok_silent) and cl->authed. */
static bool redis_check_auth(struct redis_client *cl, struct redis_msg *m, uint32_t at,
                             uint32_t count, bool ok_silent)
{
    struct redis_pool *rp = cl->rp;
    const struct conf_pool *cp = rp->cp;
    const struct resp_req *r = &cl->req;
    if (cp->redis_auth == NULL) {
        redis_reply_text(rp, m, "-ERR AUTH <password> called without any password configured "
                                "for the default user. Are you sure your configuration is "
                                "correct?\r\n");
        return false;
    }
    if (count != 1 && count != 2) {
        redis_reply_text(rp, m, "-ERR syntax error\r\n");
        return false;
    }
    const char *user = cp->redis_user ? cp->redis_user : "default";
    bool ok = redis_arg_equals(cl, &r->args[at + count - 1], cp->redis_auth) &&
              (count == 1 || redis_arg_equals(cl, &r->args[at], user));
    if (!ok) {
        redis_reply_text(rp, m, "-WRONGPASS invalid username-password pair or user is "
                                "disabled.\r\n");
        return false;
    }
    cl->authed = true;
    if (!ok_silent) {
        redis_reply_text(rp, m, "+OK\r\n");
    }
    return true;
}

static void redis_auth(struct redis_client *cl, struct redis_msg *m, uint32_t at, uint32_t count)
{
    (void)redis_check_auth(cl, m, at, count, false);
}

/* HELLO [protover [AUTH user pass] [SETNAME name]]: RESP2 only. */
static void redis_hello(struct redis_client *cl, struct redis_msg *m)
{
    struct redis_pool *rp = cl->rp;
    const struct resp_req *r = &cl->req;
    if (r->nargs >= 2 && !redis_arg_equals(cl, &r->args[1], "2")) {
        redis_reply_text(rp, m, "-NOPROTO legate speaks RESP2 only: use HELLO 2 (RESP3 "
                                "replies are not supported)\r\n");
        return;
    }
    for (uint32_t i = 2; i < r->nargs; i++) {
        char opt[16] = "";
        size_t n = r->args[i].len < sizeof(opt) - 1 ? (size_t)r->args[i].len : sizeof(opt) - 1;
        buf_queue_peek(&cl->in, r->args[i].off, opt, n);
        for (size_t k = 0; k < n; k++) {
            opt[k] = (char)(opt[k] >= 'a' && opt[k] <= 'z' ? opt[k] - 32 : opt[k]);
        }
        if (strcmp(opt, "AUTH") == 0 && i + 2 < r->nargs) {
            if (!redis_check_auth(cl, m, i + 1, 2, true)) {
                return;
            }
            i += 2;
        } else if (strcmp(opt, "SETNAME") == 0 && i + 1 < r->nargs) {
            i += 1;
        } else {
            redis_reply_text(rp, m, "-ERR syntax error in HELLO option\r\n");
            return;
        }
    }
    if (!cl->authed) {
        redis_reply_text(rp, m, "-NOAUTH HELLO must be called with the client already "
                                "authenticated, otherwise the HELLO <proto> AUTH <user> <pass> "
                                "option can be used to authenticate the client and select the "
                                "RESP protocol version at the same time\r\n");
        return;
    }
    redis_reply_text(rp, m, "*14\r\n$6\r\nserver\r\n$6\r\nlegate\r\n$7\r\nversion\r\n"
                            "$5\r\n" LEGATE_VERSION "\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:0\r\n"
                            "$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n"
                            "$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n");
}

/* Answer a command legate handles itself. */
static void redis_local(struct redis_client *cl, struct redis_msg *m, const struct redis_cmd *cmd)
{
    struct redis_pool *rp = cl->rp;
    const struct resp_req *r = &cl->req;
    switch (cmd->local) {
    case REDIS_LOCAL_PING:
        if (r->nargs == 1) {
            redis_reply_text(rp, m, "+PONG\r\n");
        } else if (r->nargs == 2) {
            const uint8_t *a = redis_arg(cl, &r->args[1]);
            if (a == NULL || redis_append_bulk(rp, &m->reply, a, (size_t)r->args[1].len) == -1) {
                redis_reply_text(rp, m, "-ERR legate: out of memory\r\n");
            }
        } else {
            redis_reply_text(rp, m, "-ERR wrong number of arguments for 'ping' command\r\n");
        }
        break;
    case REDIS_LOCAL_ECHO: {
        const uint8_t *a = redis_arg(cl, &r->args[1]);
        if (a == NULL || redis_append_bulk(rp, &m->reply, a, (size_t)r->args[1].len) == -1) {
            redis_reply_text(rp, m, "-ERR legate: out of memory\r\n");
        }
        break;
    }
    case REDIS_LOCAL_QUIT:
        redis_reply_text(rp, m, "+OK\r\n");
        cl->quit = true;
        break;
    case REDIS_LOCAL_SELECT: {
        char db[8] = "";
        size_t n = r->args[1].len < sizeof(db) - 1 ? (size_t)r->args[1].len : sizeof(db) - 1;
        buf_queue_peek(&cl->in, r->args[1].off, db, n);
        if (r->args[1].len == 1 && db[0] == '0') {
            redis_reply_text(rp, m, "+OK\r\n");
        } else {
            redis_reply_text(rp, m, "-ERR legate: only database 0 is available through a "
                                    "sharding proxy\r\n");
        }
        break;
    }
    case REDIS_LOCAL_AUTH:
        redis_auth(cl, m, 1, r->nargs - 1);
        break;
    case REDIS_LOCAL_HELLO:
        redis_hello(cl, m);
        break;
    default:
        redis_reply_text(rp, m, "-ERR legate: internal error\r\n");
        break;
    }
    m->done = true;
}

/* The server of every key of `cmd`, in `where`; returns the number of
 * keys, or -1 (reply already set on `m`). */
static int redis_keys(struct redis_client *cl, struct redis_msg *m, const struct redis_cmd *cmd,
                      int **where_out)
{
    struct redis_pool *rp = cl->rp;
    const struct resp_req *r = &cl->req;
    uint32_t first = (uint32_t)cmd->first, step = (uint32_t)cmd->step;
    uint32_t last = cmd->last < 0 ? (uint32_t)((int64_t)r->nargs + cmd->last)
                                  : (uint32_t)cmd->last;
    if (cmd->kind == REDIS_EVAL) {
        char num[24] = "";
        size_t n = r->args[2].len < sizeof(num) - 1 ? (size_t)r->args[2].len : sizeof(num) - 1;
        buf_queue_peek(&cl->in, r->args[2].off, num, n);
        char *end;
        long long nk = strtoll(num, &end, 10);
        if (n == 0 || *end != '\0' || nk < 0 || (uint64_t)nk > r->nargs - 3) {
            redis_reply_text(rp, m, "-ERR Number of keys can't be greater than number of args "
                                    "or negative\r\n");
            return -1;
        }
        first = 3;
        last = 3 + (uint32_t)nk - 1;
        step = 1;
        if (nk == 0) {
            *where_out = NULL;
            return 0;
        }
    }
    if (first == 0 || last >= r->nargs || last < first) {
        *where_out = NULL;
        return 0;
    }
    uint32_t nkeys = (last - first) / step + 1;
    int *where = malloc(nkeys * sizeof(*where));
    if (where == NULL) {
        redis_reply_text(rp, m, "-ERR legate: out of memory\r\n");
        return -1;
    }
    for (uint32_t k = 0; k < nkeys; k++) {
        where[k] = redis_key_server(cl, &r->args[first + k * step]);
        if (where[k] < 0) {
            free(where);
            redis_reply_text(rp, m, "-ERR legate: server unavailable (no live server for the "
                                    "key)\r\n");
            return -1;
        }
    }
    *where_out = where;
    return (int)nkeys;
}

/* Route the complete request at the head of cl->in. The request bytes are
 * consumed by the caller afterwards. */
static void redis_route(struct redis_client *cl)
{
    struct redis_pool *rp = cl->rp;
    const struct resp_req *r = &cl->req;
    struct redis_msg *m = redis_msg_new(cl);
    if (m == NULL) {
        log_error(rp->wk->log, "pool '%s': out of memory for a request", rp->cp->name);
        cl->quit = true;
        return;
    }
    redis_client_link(cl, m);
    const struct redis_cmd *cmd = r->name_too_long ? NULL : redis_cmd_find(r->name);
    if (cmd == NULL || cmd->kind == REDIS_UNSUPPORTED) {
        redis_reply_fmt(rp, m, "-ERR legate: unsupported command '%.64s'\r\n",
                        r->name_too_long ? "(too long)" : r->name);
        m->done = true;
        return;
    }
    if (!cl->authed && cmd->local != REDIS_LOCAL_AUTH && cmd->local != REDIS_LOCAL_HELLO &&
        cmd->local != REDIS_LOCAL_QUIT) {
        redis_reply_text(rp, m, "-NOAUTH Authentication required.\r\n");
        m->done = true;
        return;
    }
    if (!redis_cmd_arity_ok(cmd, r->nargs) ||
        (cmd->kind == REDIS_SPLIT_PAIRS && (r->nargs - 1) % 2 != 0)) {
        char lower[RESP_NAME_MAX + 1];
        size_t i = 0;
        for (; r->name[i] != '\0'; i++) {
            lower[i] = (char)(r->name[i] >= 'A' && r->name[i] <= 'Z' ? r->name[i] + 32 : r->name[i]);
        }
        lower[i] = '\0';
        redis_reply_fmt(rp, m, "-ERR wrong number of arguments for '%s' command\r\n", lower);
        m->done = true;
        return;
    }
    if (cmd->kind == REDIS_LOCAL) {
        redis_local(cl, m, cmd);
        return;
    }
    if (cmd->kind == REDIS_ANY) {
        int s = ring_pick(&rp->ring, (const uint8_t *)"", 0, bal_random(&rp->pool->bal));
        if (s < 0 || redis_forward(cl, m, s) == -1) {
            redis_reply_text(rp, m, "-ERR legate: server unavailable\r\n");
            m->done = true;
        }
        return;
    }
    int *where = NULL;
    int nkeys = redis_keys(cl, m, cmd, &where);
    if (nkeys < 0) {
        m->done = true;
        return;
    }
    bool one_server = true;
    for (int k = 1; k < nkeys; k++) {
        one_server = one_server && where[k] == where[0];
    }
    int rc;
    if (nkeys == 0) {
        int s = ring_pick(&rp->ring, (const uint8_t *)"", 0, bal_random(&rp->pool->bal));
        rc = s < 0 ? -1 : redis_forward(cl, m, s);
    } else if (one_server) {
        rc = redis_forward(cl, m, where[0]);
    } else if (cmd->kind == REDIS_KEYED || cmd->kind == REDIS_EVAL) {
        redis_reply_text(rp, m, "-ERR legate: keys in request don't hash to the same server "
                                "(use hash tags)\r\n");
        m->done = true;
        rc = 0;
    } else {
        rc = redis_split(cl, m, cmd, where, (uint32_t)nkeys,
                         cmd->kind == REDIS_SPLIT_PAIRS ? 2 : 1);
        if (rc == -1 && m->nallfrags > 0) {
            /* Fragments already sent will complete; mark the rest failed. */
            m->failed = true;
            rc = 0;
        }
    }
    free(where);
    if (rc == -1) {
        redis_reply_text(rp, m, "-ERR legate: out of memory\r\n");
        m->done = true;
    }
}

/* ---------------------------------------------------------------- */
/* clients: reading and lifecycle                                    */

static void redis_client_flush(struct ev_loop *loop, struct ev_defer *d)
{
    (void)loop;
    struct redis_client *cl = d->data;
    redis_client_pump(cl); /* collects finished replies and writes them */
}

static void redis_client_release(struct ev_loop *loop, struct ev_defer *d)
{
    (void)loop;
    struct redis_client *cl = d->data;
    resp_req_free(&cl->req);
    free(cl);
}

/* End the client. Messages still out at servers are orphaned: their
 * replies are read and dropped when they come. */
static void redis_client_close(struct redis_client *cl, bool err)
{
    if (cl->gone) {
        return;
    }
    struct redis_pool *rp = cl->rp;
    cl->gone = true;
    conn_close(&cl->c, rp->wk->loop);
    struct redis_msg *m = cl->head;
    while (m != NULL) {
        struct redis_msg *next = m->cnext;
        if (m->done) {
            redis_msg_free(rp, m); /* no server holds it */
        } else {
            m->client = NULL;
            m->cnext = NULL;
        }
        m = next;
    }
    cl->head = cl->tail = NULL;
    buf_queue_clear(&cl->in, &rp->wk->bufs);
    buf_queue_clear(&cl->out, &rp->wk->bufs);
    pool_client_closed(rp->pool, err);
    wk_item_del(rp->wk, &cl->item);
    ev_defer(rp->wk->loop, &cl->release);
}

static void redis_client_abort(struct wk_item *it)
{
    redis_client_close((struct redis_client *)it, false);
}

/* Stopping: a client with nothing in flight is closed now, the others as
 * soon as their last reply is written. */
static void redis_client_drain(struct wk_item *it)
{
    struct redis_client *cl = (struct redis_client *)it;
    cl->draining = true;
    redis_client_pump(cl);
}

/* Parse and route every complete request in cl->in. */
static void redis_client_parse(struct redis_client *cl)
{
    struct redis_pool *rp = cl->rp;
    while (!cl->quit && cl->pending < REDIS_MAX_PENDING) {
        size_t avail = buf_cursor_avail(&cl->cur, &cl->in);
        if (avail == 0) {
            return;
        }
        size_t used;
        int rc = resp_req_feed(&cl->req, cl->cur.p, avail, &used, &rp->limits);
        cl->cur.p += used;
        if (rc == RESP_AGAIN) {
            continue;
        }
        if (rc == RESP_ERROR) {
            struct redis_msg *m = redis_msg_new(cl);
            if (m != NULL) {
                redis_client_link(cl, m);
                redis_reply_fmt(rp, m, "-ERR legate: protocol error: %s\r\n", cl->req.error);
                m->done = true;
            }
            log_info(rp->wk->log, "pool '%s': closing a client after a protocol error: %s",
                     rp->cp->name, cl->req.error);
            cl->quit = true;
            buf_queue_clear(&cl->in, &rp->wk->bufs);
            buf_cursor_reset(&cl->cur, &cl->in);
            return;
        }
        if (cl->req.nargs > 0) {
            redis_route(cl);
        }
        buf_queue_consume(&cl->in, &rp->wk->bufs, (size_t)cl->req.size);
        buf_cursor_reset(&cl->cur, &cl->in);
        resp_req_reset(&cl->req);
    }
}

static void redis_client_pump(struct redis_client *cl)
{
    struct redis_pool *rp = cl->rp;
    struct buf_pool *bufs = &rp->wk->bufs;
    for (;;) {
        if (cl->gone) {
            return;
        }
        bool moved = false;
        bool room = !cl->quit && cl->pending < REDIS_MAX_PENDING &&
                    cl->out.bytes < rp->wk->queue_limit;
        if (room && cl->c.readable && !cl->c.eof) {
            /* The request being parsed may be large: allow it all in. */
            size_t limit = (size_t)cl->req.size + rp->wk->queue_limit;
            ssize_t r = conn_read(&cl->c, &cl->in, bufs, limit);
            if (r == -1) {
                redis_client_close(cl, true);
                return;
            }
            moved = r >= 0;
        }
        redis_client_parse(cl);
        redis_client_collect(cl);
        if (cl->c.writable && cl->out.bytes > 0) {
            ssize_t w = conn_write(&cl->c, &cl->out, bufs);
            if (w == -1) {
                redis_client_close(cl, true);
                return;
            }
            moved = moved || w > 0;
        }
        /* After QUIT, a protocol error or the client's FIN: close once every
         * reply is written (an unfinished request can never complete). */
        if (cl->pending == 0 && cl->out.bytes == 0 &&
            (cl->quit || cl->c.eof || (cl->draining && cl->in.bytes == 0))) {
            redis_client_close(cl, false);
            return;
        }
        if (!moved) {
            return;
        }
    }
}

static void redis_client_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    struct redis_client *cl = io->data;
    conn_note_events(&cl->c, events);
    redis_client_pump(cl);
}

int redis_client_start(struct pool *p, int fd)
{
    struct redis_pool *rp = p->proto;
    struct redis_client *cl = calloc(1, sizeof(*cl));
    if (cl == NULL) {
        log_error(rp->wk->log, "pool '%s': out of memory for a client", p->cp->name);
        return -1;
    }
    cl->rp = rp;
    cl->authed = p->cp->redis_auth == NULL;
    buf_queue_init(&cl->in);
    buf_queue_init(&cl->out);
    resp_req_init(&cl->req);
    cl->flush = (struct ev_defer){ .fn = redis_client_flush, .data = cl };
    cl->release = (struct ev_defer){ .fn = redis_client_release, .data = cl };
    net_set_nodelay(fd, &p->cp->listen);
    if (conn_open(&cl->c, rp->wk->loop, fd, redis_client_io, cl) == -1) {
        log_error(rp->wk->log, "pool '%s': epoll: %s", p->cp->name, strerror(errno));
        free(cl);
        return -1;
    }
    wk_item_add(rp->wk, &cl->item, redis_client_abort, redis_client_drain);
    return 0;
}

/* ---------------------------------------------------------------- */
/* pool                                                              */

int redis_pool_init(struct pool *p)
{
    const struct conf_pool *cp = p->cp;
    struct redis_pool *rp = calloc(1, sizeof(*rp));
    if (rp == NULL) {
        return -1;
    }
    rp->pool = p;
    rp->wk = p->wk;
    rp->cp = cp;
    rp->limits = resp_default_limits;
    rp->nservers = cp->nservers;
    rp->servers = calloc(cp->nservers, sizeof(*rp->servers));
    rp->live = calloc(cp->nservers, sizeof(*rp->live));
    if (rp->servers == NULL || rp->live == NULL || ring_build(&rp->ring, cp, NULL) == -1) {
        free(rp->servers);
        free(rp->live);
        free(rp);
        return -1;
    }
    for (size_t i = 0; i < cp->nservers; i++) {
        struct redis_server *s = &rp->servers[i];
        rp->live[i] = true;
        s->rp = rp;
        s->index = i;
        s->readmit = (struct ev_timer){ .fn = redis_server_readmit, .data = s };
        s->nconns = cp->server_connections;
        s->conns = calloc(s->nconns, sizeof(*s->conns));
        if (s->conns == NULL) {
            p->proto = rp;
            redis_pool_fini(p);
            return -1;
        }
        for (unsigned k = 0; k < s->nconns; k++) {
            struct redis_sconn *sc = &s->conns[k];
            sc->rp = rp;
            sc->server = i;
            sc->state = SC_DOWN;
            sc->c.io.fd = -1;
            buf_queue_init(&sc->out);
            buf_queue_init(&sc->in);
            resp_rsp_init(&sc->rsp);
            sc->timer = (struct ev_timer){ .fn = redis_sconn_timer, .data = sc };
            sc->again = (struct ev_defer){ .fn = redis_sconn_again, .data = sc };
        }
    }
    p->proto = rp;
    if (cp->preconnect) {
        for (size_t i = 0; i < rp->nservers; i++) {
            for (unsigned k = 0; k < rp->servers[i].nconns; k++) {
                (void)redis_sconn_connect(&rp->servers[i].conns[k]);
            }
        }
    }
    return 0;
}

void redis_pool_fini(struct pool *p)
{
    struct redis_pool *rp = p->proto;
    if (rp == NULL) {
        return;
    }
    for (size_t i = 0; i < rp->nservers; i++) {
        struct redis_server *s = &rp->servers[i];
        ev_timer_stop(rp->wk->loop, &s->readmit);
        for (unsigned k = 0; s->conns != NULL && k < s->nconns; k++) {
            struct redis_sconn *sc = &s->conns[k];
            conn_close(&sc->c, rp->wk->loop);
            ev_timer_stop(rp->wk->loop, &sc->timer);
            struct redis_msg *m = sc->head;
            while (m != NULL) { /* orphans only: clients are gone */
                struct redis_msg *next = m->snext;
                if (m->parent == NULL) {
                    redis_msg_free(rp, m);
                } else if (--m->parent->nfrags == 0) {
                    redis_msg_free(rp, m->parent); /* frees its fragments */
                }
                m = next;
            }
            buf_queue_clear(&sc->out, &rp->wk->bufs);
            buf_queue_clear(&sc->in, &rp->wk->bufs);
        }
        free(s->conns);
    }
    free(rp->servers);
    free(rp->live);
    ring_free(&rp->ring);
    free(rp->scratch);
    free(rp);
    p->proto = NULL;
}
