/* http: the HTTP/1.1 splitting proxy (see http.h). */
#include "http.h"
#include "../core/conn.h"
#include "../core/log.h"
#include "../core/net.h"
#include "../core/slab.h"
#include "../core/tm.h"
#include "../upstream/pool.h"
#include "../wk.h"
#include "http_head.h"
#include "http_mirror.h"
#include "http_split.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Retries of an idempotent request on another server of its arm; idle
 * connections kept per server and worker for reuse (more are closed, as
 * nginx's `keepalive N`). */
enum { HTTP_MAX_TRIES = 2, HTTP_IDLE_PER_SERVER = 64 };

struct http_up;

struct http_pool {
    struct pool *pool;
    struct wk *wk;
    const struct conf_pool *cp;
    struct bal *arm_bal;        /* one balancer per arm, over all slots: those not
                                 * of the arm are held down */
    struct http_up **idle;      /* per server: reusable connections */
    unsigned *nidle;            /* per server: how many */
    unsigned *arm_gen;          /* per slot: the fill the arms' balancers know */
    struct slab clients;        /* struct http_client, packed */
    struct slab ups;            /* struct http_up, packed */
};

enum http_cstate {
    HC_HEAD,      /* reading a request head */
    HC_BODY,      /* streaming its body upstream */
    HC_WAIT,      /* request complete; the response is still coming */
    HC_CLOSING,   /* write what is queued, then close */
    HC_LINGER,    /* FIN sent; dropping what the client still sends */
};

struct http_client {
    struct wk_item item;        /* first: the worker's list links to it */
    struct http_pool *hp;
    struct conn c;
    struct buf_queue in;
    struct buf_queue out;
    struct http_parser req;
    enum http_cstate state;
    char addr[INET6_ADDRSTRLEN];

    /* the exchange in progress */
    struct buf_queue up;        /* request bytes for the upstream, not yet written */
    struct http_up *u;
    struct http_mirror *mirror; /* the shadow copy of this request, if any */
    size_t arm;
    int tried[HTTP_MAX_TRIES];
    unsigned ntried;
    bool req_done;              /* the whole request is in `up` */
    bool req_chunked;           /* its body is re-chunked */
    bool idempotent;
    bool pending;               /* holds a max_pending place for this request */
    bool busy;                  /* max_connections turned its connect away */
    bool rsp_started;           /* response head written to `out` */
    bool rsp_chunked;           /* its body is re-chunked toward the client */
    bool close_after;           /* close once this response is out */
    bool handoff;               /* a reload: move to the new generation between requests */
    bool head_timer;            /* the header timeout is running */
    uint64_t t_start_us;

    struct ev_timer timer;
    struct ev_defer kick;       /* pump again once this batch of events is done */
    struct ev_defer release;
    bool gone;
};

struct http_up {
    struct conn c;
    struct http_pool *hp;
    size_t server;              /* index in the pool's servers */
    struct http_client *cl;     /* NULL while idle */
    struct http_up *next_idle;
    struct buf_queue in;
    struct http_parser rsp;
    bool connecting;
    bool counted;               /* holds a max_connections place */
    bool reused;                /* served an exchange before this one */
    bool got_bytes;             /* something came back for this exchange */
    struct ev_timer timer;
    struct ev_defer kick;
    struct ev_defer release;
    bool gone;
};

static void http_client_pump(struct http_client *cl);
static void http_client_close(struct http_client *cl, bool err);
static void http_up_close(struct http_up *u);
static void http_up_pump(struct http_up *u);
static void http_dispatch(struct http_client *cl);
static void http_reject(struct http_client *cl, const char *why);

/* Run the other side's pump from the loop rather than from inside this
 * side's (no re-entry; one run per batch however often it is asked). */
static void http_client_kick(struct http_client *cl)
{
    if (!cl->gone) {
        ev_defer(cl->hp->wk->loop, &cl->kick);
    }
}

static void http_up_kick(struct http_up *u)
{
    if (!u->gone && !u->connecting) {
        ev_defer(u->hp->wk->loop, &u->kick);
    }
}

static void http_client_kicked(struct ev_loop *loop, struct ev_defer *d)
{
    (void)loop;
    struct http_client *cl = d->data;
    if (!cl->gone) {
        http_client_pump(cl);
    }
}

static void http_up_kicked(struct ev_loop *loop, struct ev_defer *d)
{
    (void)loop;
    struct http_up *u = d->data;
    if (!u->gone) {
        http_up_pump(u);
    }
}

static const char *http_server_spec(const struct http_pool *hp, size_t server)
{
    return hp->pool->servers[server].spec;
}

/* Host for a request that has none (HTTP/1.0): the arm's first configured
 * server, else the name its discovery looks up, else legate's own address. */
static const char *http_default_host(const struct conf_pool *cp, size_t arm)
{
    const struct conf_arm *a = &cp->arms[arm];
    if (a->n > 0) {
        return cp->servers[a->first].spec;
    }
    const struct conf_discovery *d = conf_pool_discovery(cp, cp->split ? (int)arm
                                                                       : CONF_DISC_POOL);
    return d != NULL && (d->kind == CONF_DISC_DNS || d->kind == CONF_DISC_SRV) ? d->name
                                                                               : cp->listen_spec;
}

static struct stats_pool *http_stats(const struct http_pool *hp)
{
    return hp->pool->stats;
}

/* ------------------------------------------------------------------ */
/* replies legate writes itself                                        */

static const struct {
    int status;
    const char *text;
} http_reasons[] = {
    { 400, "Bad Request" },        { 408, "Request Timeout" },
    { 413, "Content Too Large" },  { 414, "URI Too Long" },
    { 431, "Request Header Fields Too Large" },
    { 500, "Internal Server Error" }, { 501, "Not Implemented" },
    { 502, "Bad Gateway" },        { 503, "Service Unavailable" },
    { 504, "Gateway Timeout" },    { 505, "HTTP Version Not Supported" },
};

static const char *http_reason(int status)
{
    for (size_t i = 0; i < sizeof(http_reasons) / sizeof(http_reasons[0]); i++) {
        if (http_reasons[i].status == status) {
            return http_reasons[i].text;
        }
    }
    return "Error";
}

/* Queue an error response; `close` ends the connection after it. */
static void http_reply_error(struct http_client *cl, int status, const char *why, bool close)
{
    char body[256], head[256];
    int bn = snprintf(body, sizeof(body), "%d %s: %s\n", status, http_reason(status), why);
    if (bn < 0 || (size_t)bn >= sizeof(body)) {
        bn = (int)sizeof(body) - 1;
    }
    int hn = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n",
                      status, http_reason(status), bn, close ? "Connection: close\r\n" : "");
    struct buf_pool *bufs = &cl->hp->wk->bufs;
    if (hn < 0 || buf_queue_append(&cl->out, bufs, head, (size_t)hn) == -1 ||
        buf_queue_append(&cl->out, bufs, body, (size_t)bn) == -1) {
        close = true;
    }
    cl->rsp_started = true;
    if (close) {
        cl->close_after = true;
    }
}

/* ------------------------------------------------------------------ */
/* the client side                                                      */

static void http_client_release(struct ev_loop *loop, struct ev_defer *d)
{
    (void)loop;
    struct http_client *cl = d->data;
    http_parser_free(&cl->req);
    slab_free(&cl->hp->clients, cl);
}

/* Detach the client's upstream connection: reusable ones go idle. */
static void http_client_drop_up(struct http_client *cl, bool reusable)
{
    struct http_up *u = cl->u;
    if (u == NULL) {
        return;
    }
    cl->u = NULL;
    u->cl = NULL;
    struct http_pool *hp = cl->hp;
    bal_closed(&hp->arm_bal[cl->arm], (int)u->server);
    if (reusable && !u->gone && u->in.bytes == 0 && !u->c.eof && !hp->wk->draining &&
        hp->nidle[u->server] < HTTP_IDLE_PER_SERVER &&
        hp->pool->state[u->server] == SERVER_ACTIVE) {
        http_parser_next(&u->rsp);
        u->reused = true;
        u->got_bytes = false;
        ev_timer_stop(hp->wk->loop, &u->timer);
        if (hp->cp->timeout_idle != 0) {
            ev_timer_start(hp->wk->loop, &u->timer, hp->cp->timeout_idle);
        }
        u->next_idle = hp->idle[u->server];
        hp->idle[u->server] = u;
        hp->nidle[u->server]++;
        return;
    }
    http_up_close(u);
}

/* Forget the client whose socket is closed or handed over. */
static void http_client_end(struct http_client *cl, bool err)
{
    cl->gone = true;
    struct http_pool *hp = cl->hp;
    if (cl->pending) {
        pool_pending_end(hp->pool);
        cl->pending = false;
    }
    if (cl->mirror != NULL) {
        http_mirror_abort(cl->mirror); /* the request will never be complete */
        cl->mirror = NULL;
    }
    http_client_drop_up(cl, false);
    ev_timer_stop(hp->wk->loop, &cl->timer);
    buf_queue_clear(&cl->in, &hp->wk->bufs);
    buf_queue_clear(&cl->out, &hp->wk->bufs);
    buf_queue_clear(&cl->up, &hp->wk->bufs);
    pool_client_closed(hp->pool, err);
    wk_item_del(hp->wk, &cl->item);
    ev_defer(hp->wk->loop, &cl->release);
}

static void http_client_close(struct http_client *cl, bool err)
{
    if (cl->gone) {
        return;
    }
    conn_close(&cl->c, cl->hp->wk->loop);
    http_client_end(cl, err);
}

/* A reload finds the client at rest: rather than close its keep-alive
 * connection (racing a request it may be sending), hand the socket and
 * the bytes it sent since, unparsed, to the newest generation
 * (handoff.h); closed when there is none. */
static void http_client_hand_off(struct http_client *cl)
{
    struct http_pool *hp = cl->hp;
    handoff_conn(&hp->pool->shared->box, &cl->c, hp->wk->loop, false, &cl->in);
    http_client_end(cl, false);
}

static void http_client_abort(struct wk_item *it)
{
    http_client_close((struct http_client *)it, false);
}

/* The last response is written and no next request has begun: the parser
 * took no byte of a head (it consumes cl->in as it collects one; what
 * cl->in holds is unparsed). */
static bool http_client_at_rest(const struct http_client *cl)
{
    return cl->state == HC_HEAD && cl->out.bytes == 0 && cl->req.head.len == 0 &&
           !cl->req.head.done;
}

/* At rest, and nothing of a next request has arrived either. */
static bool http_client_between_requests(const struct http_client *cl)
{
    return http_client_at_rest(cl) && cl->in.bytes == 0;
}

/* Draining. At a reload (a successor pool is linked) the client is handed
 * over as soon as it is at rest, with what it sent since, unparsed: a
 * request under way finishes here first, and no next one begins here.
 * Otherwise a client between requests goes now, others after their
 * response (Connection: close is sent with it); a request already in the
 * socket counts as begun, so it reads once before judging, since the
 * event may not have been seen yet. */
static void http_client_drain(struct wk_item *it)
{
    struct http_client *cl = (struct http_client *)it;
    if (cl->state == HC_LINGER) {
        http_client_close(cl, false);
        return;
    }
    if (handoff_linked(&cl->hp->pool->shared->box)) {
        cl->handoff = true;
        if (http_client_at_rest(cl)) {
            http_client_hand_off(cl);
        }
        return;
    }
    cl->close_after = true;
    if (http_client_between_requests(cl)) {
        cl->c.readable = true;
        http_client_pump(cl);
        if (!cl->gone && http_client_between_requests(cl)) {
            http_client_close(cl, false);
        }
    }
}

/* Stop reading requests; close once the queued output is written. */
static void http_client_finish(struct http_client *cl)
{
    cl->state = HC_CLOSING;
    http_client_drop_up(cl, false);
    ev_timer_stop(cl->hp->wk->loop, &cl->timer);
}

static void http_client_timer(struct ev_loop *loop, struct ev_timer *t)
{
    (void)loop;
    struct http_client *cl = t->data;
    if (cl->state == HC_HEAD && cl->head_timer) {
        log_info(cl->hp->wk->log, "pool '%s': client %s sent no complete request head in "
                 "%llu ms", cl->hp->cp->name, cl->addr,
                 (unsigned long long)cl->hp->cp->timeout_header);
        http_reply_error(cl, 408, "request head not received in time", true);
        http_client_finish(cl);
        http_client_pump(cl);
        return;
    }
    if (cl->state == HC_HEAD || cl->state == HC_LINGER) {
        http_client_close(cl, false); /* idle keep-alive, or lingered long enough */
    }
}

/* "<n in hex>\r\n", the header of one chunk, into `out` (>= 18 bytes);
 * returns its length. */
static size_t http_chunk_header(char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char d[16];
    size_t k = 0;
    do {
        d[k++] = hex[n & 15];
        n >>= 4;
    } while (n != 0);
    size_t len = 0;
    while (k > 0) {
        out[len++] = d[--k];
    }
    out[len++] = '\r';
    out[len++] = '\n';
    return len;
}

/* Request bytes as sent upstream: to the up queue and to the mirror's
 * copy (which may drop out). Returns 0 or -1 (out of memory). */
static int http_req_copy(struct http_client *cl, const char *data, size_t n)
{
    if (cl->mirror != NULL) {
        http_mirror_body(cl->mirror, data, n); /* may drop out, clearing cl->mirror */
    }
    return buf_queue_append(&cl->up, &cl->hp->wk->bufs, data, n);
}

/* Body bytes of the request, as llhttp passes them: re-chunked when the
 * client sent chunks. */
static int http_req_body(void *owner, const char *at, size_t n)
{
    struct http_client *cl = owner;
    if (cl->req_chunked) {
        char hdr[20];
        size_t k = http_chunk_header(hdr, n);
        return http_req_copy(cl, hdr, k) == -1 || http_req_copy(cl, at, n) == -1 ||
                       http_req_copy(cl, "\r\n", 2) == -1
                   ? -1
                   : 0;
    }
    return http_req_copy(cl, at, n);
}

/* Whether the parser stopped right after a head and may finish a message
 * with no more input (a request or response without a body). */
static bool http_parser_stalled(const struct http_parser *p)
{
    return p->head.done && p->paused && !p->msg_done;
}

/* Feed the first chunk of `q` (or nothing, to let a stalled parser end a
 * bodiless message). Returns bytes consumed, or -1. */
static long http_feed_queue(struct http_parser *p, const struct buf_queue *q,
                            struct http_error *err)
{
    if (q->head == NULL) {
        return http_parser_feed(p, "", 0, err);
    }
    return http_parser_feed(p, (const char *)q->head->pos, buf_unread(q->head), err);
}

static bool http_method_idempotent(uint8_t m)
{
    return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_PUT || m == HTTP_DELETE ||
           m == HTTP_OPTIONS || m == HTTP_TRACE;
}

/* How the current request's head is rewritten for its upstream. */
static struct http_out http_request_out(const struct http_client *cl)
{
    const struct conf_pool *cp = cl->hp->cp;
    return (struct http_out){
        .forwarded_for = cp->forwarded_for ? cl->addr : NULL,
        .via = cp->via,
        .chunked = cl->req_chunked,
        .host = http_default_host(cp, cl->arm),
    };
}

/* A request head is complete: check it, pick the arm, queue the head. */
static int http_request_head(struct http_client *cl)
{
    struct http_pool *hp = cl->hp;
    const struct conf_pool *cp = hp->cp;
    struct http_head *h = &cl->req.head;
    cl->head_timer = false;
    ev_timer_stop(hp->wk->loop, &cl->timer);
    if (h->upgrade) {
        cl->close_after = true; /* no protocol switch: the Upgrade header is dropped */
    }
    if (!h->keep_alive || (hp->wk->draining && !cl->handoff)) {
        cl->close_after = true;
    }
    cl->req_chunked = h->framing == HTTP_BODY_CHUNKED;
    cl->idempotent = http_method_idempotent(h->method);
    cl->arm = http_split_pick(cp, h, cl->addr, bal_random(&hp->pool->bal));
    cl->t_start_us = tm_now_us();
    budget_deposit(&hp->pool->budget, cp, ev_now(hp->wk->loop));
    stats_add(stats_arm(http_stats(hp), cl->arm, SA_REQUESTS), 1);
    struct http_out o = http_request_out(cl);
    if (http_head_write_request(h, &o, &cl->up, &hp->wk->bufs) == -1) {
        return -1;
    }
    http_mirror_start(hp->pool, h, &o, bal_random(&hp->pool->bal), &cl->mirror);
    return 0;
}

/* Queue the current request again, for a new connection, if all of it can
 * be: its head is rebuilt, but body bytes already sent are gone. Returns 0,
 * or -1 (a body, or out of memory). */
static int http_request_again(struct http_client *cl)
{
    const struct http_head *h = &cl->req.head;
    if (h->framing != HTTP_BODY_NONE) { /* Content-Length: 0 counts as none */
        return -1;
    }
    struct buf_pool *bufs = &cl->hp->wk->bufs;
    buf_queue_clear(&cl->up, bufs);
    struct http_out o = http_request_out(cl);
    return http_head_write_request(h, &o, &cl->up, bufs);
}

/* The request is fully read: nothing more of it will come. */
static int http_request_done(struct http_client *cl)
{
    cl->req_done = true;
    if (cl->req_chunked && http_req_copy(cl, "0\r\n\r\n", 5) == -1) {
        return -1;
    }
    if (cl->mirror != NULL) {
        http_mirror_detach(cl->mirror); /* it finishes on its own */
        cl->mirror = NULL;
    }
    if (cl->state == HC_BODY) {
        cl->state = HC_WAIT;
    }
    return 0;
}

/* Waiting to be handed over (a reload): no next request begins here. */
static bool http_client_held(const struct http_client *cl)
{
    return cl->handoff && cl->state == HC_HEAD && cl->req.head.len == 0;
}

/* Feed the client's input to its request parser while the state allows
 * and the up queue has room. Returns 0, or -1 after answering an error. */
static int http_client_parse(struct http_client *cl)
{
    struct http_pool *hp = cl->hp;
    while ((cl->in.bytes > 0 || http_parser_stalled(&cl->req)) &&
           (cl->state == HC_HEAD || cl->state == HC_BODY) &&
           cl->up.bytes < hp->wk->queue_limit && !http_client_held(cl)) {
        struct http_error err = { 0, NULL };
        if (cl->state == HC_HEAD && !cl->head_timer && hp->cp->timeout_header != 0) {
            cl->head_timer = true;
            ev_timer_start(hp->wk->loop, &cl->timer, hp->cp->timeout_header);
        }
        long used = http_feed_queue(&cl->req, &cl->in, &err);
        if (used >= 0 && cl->state == HC_HEAD && cl->req.head.done &&
            http_head_check_proxy(&cl->req.head, &err) == -1) {
            used = -1;
        }
        if (used < 0) {
            log_info(hp->wk->log, "pool '%s': client %s: %d %s", hp->cp->name, cl->addr,
                     err.status, err.why);
            if (!cl->rsp_started) {
                http_reply_error(cl, err.status ? err.status : 400, err.why, true);
            }
            http_client_finish(cl);
            return -1;
        }
        buf_queue_consume(&cl->in, &hp->wk->bufs, (size_t)used);
        if (cl->state == HC_HEAD && cl->req.head.done) {
            if (http_request_head(cl) == -1) {
                http_reply_error(cl, 500, "out of memory", true);
                http_client_finish(cl);
                return -1;
            }
            cl->state = HC_BODY;
            if (cl->req.head.expect_continue && cl->req.head.framing == HTTP_BODY_NONE) {
                cl->req.head.expect_continue = false;
            }
            if (!pool_pending_begin(hp->pool)) {
                http_reject(cl, "too many requests in flight (max_pending)");
            } else {
                cl->pending = hp->cp->max_pending != 0;
                http_dispatch(cl);
            }
            if (cl->gone || cl->state == HC_CLOSING) {
                return -1;
            }
        }
        if (cl->req.msg_done && !cl->req_done) {
            if (http_request_done(cl) == -1) {
                http_client_finish(cl);
                return -1;
            }
            break; /* the next request waits for this response */
        }
    }
    return 0;
}

/* The exchange ended (response complete): account, recycle, go on. */
static void http_exchange_done(struct http_client *cl, bool up_reusable)
{
    struct http_pool *hp = cl->hp;
    uint64_t now_us = tm_now_us();
    if (cl->pending) {
        pool_pending_end(hp->pool);
        cl->pending = false;
    }
    uint64_t took_us = now_us - cl->t_start_us;
    stats_arm_latency(http_stats(hp), cl->arm, took_us);
    if (cl->u != NULL) { /* answered (failures come here without one) */
        stats_latency(http_stats(hp), cl->u->server, took_us);
        bal_observe(&hp->arm_bal[cl->arm], cl->u->server, took_us, now_us);
        pool_server_ok(hp->pool, cl->u->server);
    }
    if (!cl->req_done) {
        /* answered before the request body ended: this connection can't
         * tell where the next request starts */
        up_reusable = false;
        cl->close_after = true;
        if (cl->mirror != NULL) {
            http_mirror_abort(cl->mirror);
            cl->mirror = NULL;
        }
    }
    http_client_drop_up(cl, up_reusable);
    buf_queue_clear(&cl->up, &hp->wk->bufs);
    if (cl->close_after) {
        cl->state = HC_CLOSING;
        return;
    }
    http_parser_next(&cl->req);
    cl->state = HC_HEAD;
    cl->req_done = false;
    cl->rsp_started = false;
    cl->rsp_chunked = false;
    cl->ntried = 0;
    if (hp->cp->timeout_idle != 0) {
        ev_timer_start(hp->wk->loop, &cl->timer, hp->cp->timeout_idle);
    }
}

/* Something failed upstream before the response was complete. */
static void http_upstream_failed(struct http_client *cl, int status, const char *why,
                                 enum stats_arm_field what)
{
    struct http_pool *hp = cl->hp;
    stats_add(stats_arm(http_stats(hp), cl->arm, what), 1);
    if (status >= 500) {
        stats_add(stats_arm(http_stats(hp), cl->arm, SA_RESPONSES_5XX), 1);
    }
    http_client_drop_up(cl, false);
    if (cl->rsp_started) {
        http_client_finish(cl); /* the head is out: all we can do is close */
        return;
    }
    http_reply_error(cl, status, why, !cl->req_done);
    http_exchange_done(cl, false);
}

/* A limit of the pool turns the request away at once: 503. */
static void http_reject(struct http_client *cl, const char *why)
{
    struct http_pool *hp = cl->hp;
    stats_add(&http_stats(hp)->x[SX_REJECTED], 1);
    stats_add(stats_arm(http_stats(hp), cl->arm, SA_RESPONSES_5XX), 1);
    if (cl->mirror != NULL) {
        http_mirror_abort(cl->mirror);
        cl->mirror = NULL;
    }
    http_reply_error(cl, 503, why, !cl->req_done);
    http_exchange_done(cl, false);
}

static void http_client_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    struct http_client *cl = io->data;
    conn_note_events(&cl->c, events);
    http_client_pump(cl);
}

/* An answer that ended the connection is written: linger (see
 * conn_linger) rather than close on what the client may still be sending. */
static void http_client_linger(struct http_client *cl)
{
    enum conn_linger step = conn_linger(&cl->c, cl->hp->wk->loop, &cl->timer);
    if (step == CONN_LINGER_AGAIN) {
        http_client_kick(cl);
    } else if (step != CONN_LINGER_WAIT) {
        http_client_close(cl, step == CONN_LINGER_FAILED);
    }
}

static void http_client_pump(struct http_client *cl)
{
    struct http_pool *hp = cl->hp;
    struct buf_pool *bufs = &hp->wk->bufs;
    if (cl->state == HC_LINGER) {
        http_client_linger(cl);
        return;
    }
    for (int rounds = 0; rounds < 64 && !cl->gone; rounds++) {
        bool progress = false;
        bool want_read = (cl->state == HC_HEAD || cl->state == HC_BODY) &&
                         cl->in.bytes < hp->wk->queue_limit && !http_client_held(cl);
        if (cl->c.readable && !cl->c.eof && want_read) {
            ssize_t r = conn_read(&cl->c, &cl->in, bufs, hp->wk->queue_limit);
            if (r == -1) {
                http_client_close(cl, true);
                return;
            }
            progress = r > 0 || cl->c.eof;
        }
        size_t before = cl->in.bytes;
        if (http_client_parse(cl) == 0 && cl->in.bytes != before) {
            progress = true;
        }
        if (cl->u != NULL && cl->up.bytes > 0) {
            http_up_kick(cl->u); /* request bytes to send */
        }
        if (cl->out.bytes > 0 && cl->c.writable) {
            ssize_t w = conn_write(&cl->c, &cl->out, bufs);
            if (w == -1) {
                http_client_close(cl, true);
                return;
            }
            if (w > 0) {
                progress = true;
                if (cl->u != NULL && cl->out.bytes < hp->wk->queue_limit) {
                    http_up_kick(cl->u); /* room again for the response body */
                }
            }
        }
        if (cl->handoff && http_client_at_rest(cl)) {
            http_client_hand_off(cl); /* its exchange ended after the reload began */
            return;
        }
        if (hp->wk->draining && !cl->handoff && http_client_between_requests(cl)) {
            http_client_close(cl, false); /* its response was still being written */
            return;
        }
        if (cl->state == HC_CLOSING && cl->out.bytes == 0) {
            if (!cl->req_done && !cl->c.eof && !hp->wk->draining) {
                cl->state = HC_LINGER; /* part of the request may be unread */
                buf_queue_clear(&cl->in, bufs);
                http_client_linger(cl);
            } else {
                http_client_close(cl, false);
            }
            return;
        }
        if (cl->c.eof && cl->in.bytes == 0) {
            if (cl->state == HC_HEAD) {
                if (cl->req.head.len > 0 && !cl->req.head.done) {
                    log_info(hp->wk->log, "pool '%s': client %s closed mid-head",
                             hp->cp->name, cl->addr);
                }
                http_client_close(cl, false);
                return;
            }
            if (cl->state == HC_BODY) {
                http_client_close(cl, true); /* gone before its body ended */
                return;
            }
        }
        if (!progress) {
            return;
        }
    }
}

/* ------------------------------------------------------------------ */
/* the upstream side                                                    */

static void http_up_release(struct ev_loop *loop, struct ev_defer *d)
{
    (void)loop;
    struct http_up *u = d->data;
    http_parser_free(&u->rsp);
    slab_free(&u->hp->ups, u);
}

/* Take `u` off its server's idle list, if it is there. */
static void http_up_unidle(struct http_up *u)
{
    struct http_up **pp = &u->hp->idle[u->server];
    while (*pp != NULL && *pp != u) {
        pp = &(*pp)->next_idle;
    }
    if (*pp == u) {
        *pp = u->next_idle;
        u->hp->nidle[u->server]--;
    }
    u->next_idle = NULL;
}

static void http_up_close(struct http_up *u)
{
    if (u->gone) {
        return;
    }
    u->gone = true;
    struct http_pool *hp = u->hp;
    if (u->counted) {
        pool_conn_end(hp->pool);
        u->counted = false;
    }
    if (u->cl == NULL) {
        http_up_unidle(u);
    }
    if (!u->connecting) {
        pool_server_conn(hp->pool, u->server, -1);
    }
    conn_close(&u->c, hp->wk->loop);
    ev_timer_stop(hp->wk->loop, &u->timer);
    buf_queue_clear(&u->in, &hp->wk->bufs);
    ev_defer(hp->wk->loop, &u->release);
    pool_server_use(hp->pool, u->server, -1); /* last: the slot may be recycled */
}

/* Response body bytes: to the client, re-chunked when we chunk. */
static int http_rsp_body(void *owner, const char *at, size_t n)
{
    struct http_up *u = owner;
    struct http_client *cl = u->cl;
    if (cl == NULL) {
        return 0;
    }
    struct buf_pool *bufs = &u->hp->wk->bufs;
    if (cl->rsp_chunked) {
        char hdr[20];
        size_t k = http_chunk_header(hdr, n);
        if (buf_queue_append(&cl->out, bufs, hdr, k) == -1 ||
            buf_queue_append(&cl->out, bufs, at, n) == -1 ||
            buf_queue_append(&cl->out, bufs, "\r\n", 2) == -1) {
            return -1;
        }
        return 0;
    }
    return buf_queue_append(&cl->out, bufs, at, n);
}

static void http_count_status(struct http_client *cl, int status)
{
    static const enum stats_arm_field cls[] = { SA_RESPONSES_1XX, SA_RESPONSES_2XX,
                                                SA_RESPONSES_3XX, SA_RESPONSES_4XX,
                                                SA_RESPONSES_5XX };
    int c = status / 100;
    if (c >= 1 && c <= 5) {
        stats_add(stats_arm(http_stats(cl->hp), cl->arm, cls[c - 1]), 1);
    }
}

/* The response head arrived: rewrite it for the client. */
static int http_response_head(struct http_up *u)
{
    struct http_client *cl = u->cl;
    const struct conf_pool *cp = u->hp->cp;
    struct http_head *h = &u->rsp.head;
    const struct http_head *rq = &cl->req.head;
    bool old_client = rq->major == 1 && rq->minor == 0;
    if (h->status < 200) {
        /* 1xx: pass it on (100 Continue to a client that asked), then
         * wait for the final response on the same connection */
        if (h->status == 101) {
            return -1; /* no protocol switch through legate */
        }
        if (old_client || (h->status == 100 && !rq->expect_continue)) {
            return 0;
        }
        struct http_out o = { .via = false };
        return http_head_write_response(h, &o, &cl->out, &u->hp->wk->bufs);
    }
    http_count_status(cl, h->status);
    if (h->framing == HTTP_BODY_EOF) {
        if (old_client) {
            cl->close_after = true; /* the close ends the body for it too */
        } else {
            cl->rsp_chunked = true;
        }
    } else if (h->framing == HTTP_BODY_CHUNKED) {
        if (old_client) {
            cl->close_after = true;
        } else {
            cl->rsp_chunked = true;
        }
    }
    struct http_out o = {
        .via = cp->via,
        .close = cl->close_after || !cl->req_done,
        .chunked = cl->rsp_chunked,
        .extra_name = cp->arm_header,
        .extra_value = cp->arms[cl->arm].name,
    };
    if (o.close) {
        cl->close_after = true;
    }
    cl->rsp_started = true;
    return http_head_write_response(h, &o, &cl->out, &u->hp->wk->bufs);
}

static void http_up_fail(struct http_up *u, int status, const char *why,
                         enum stats_arm_field what)
{
    struct http_client *cl = u->cl;
    pool_server_warn(u->hp->pool, u->server, "upstream %s: %s",
                     http_server_spec(u->hp, u->server), why);
    stats_add(stats_server(http_stats(u->hp), u->server,
                           what == SA_TIMEOUTS ? SS_SERVER_TIMEDOUT : SS_SERVER_ERR), 1);
    pool_server_failed(u->hp->pool, u->server);
    if (cl == NULL) {
        http_up_close(u);
        return;
    }
    http_upstream_failed(cl, status, why, what);
    http_client_kick(cl);
}

/* Parse what the upstream sent. Returns -1 when `u` was closed. */
static int http_up_parse(struct http_up *u)
{
    struct http_pool *hp = u->hp;
    struct http_client *cl = u->cl;
    while ((u->in.bytes > 0 || http_parser_stalled(&u->rsp)) && cl != NULL &&
           cl->out.bytes < hp->wk->queue_limit) {
        struct http_error err = { 0, NULL };
        long used = http_feed_queue(&u->rsp, &u->in, &err);
        if (used < 0) {
            http_up_fail(u, 502, err.why ? err.why : "invalid response", SA_UPSTREAM_ERRORS);
            return -1;
        }
        buf_queue_consume(&u->in, &hp->wk->bufs, (size_t)used);
        http_client_kick(cl); /* response bytes to write */
        struct http_head *h = &u->rsp.head;
        if (h->done && !u->rsp.msg_done && !cl->rsp_started && h->status >= 200) {
            if (http_response_head(u) == -1) {
                http_up_fail(u, 502, "unusable response head", SA_UPSTREAM_ERRORS);
                return -1;
            }
        }
        if (u->rsp.msg_done) {
            if (h->status < 200) {
                if (http_response_head(u) == -1) {
                    http_up_fail(u, 502, "protocol switch refused", SA_UPSTREAM_ERRORS);
                    return -1;
                }
                http_parser_next(&u->rsp);
                u->rsp.no_body = cl->req.head.method == HTTP_HEAD;
                continue;
            }
            if (!cl->rsp_started && http_response_head(u) == -1) {
                http_up_fail(u, 502, "unusable response head", SA_UPSTREAM_ERRORS);
                return -1;
            }
            if (cl->rsp_chunked &&
                buf_queue_append(&cl->out, &hp->wk->bufs, "0\r\n\r\n", 5) == -1) {
                cl->close_after = true;
            }
            stats_add(stats_server(http_stats(hp), u->server, SS_RESPONSES), 1);
            bool reusable = h->keep_alive && u->in.bytes == 0;
            http_exchange_done(cl, reusable);
            http_client_kick(cl);
            return -1; /* `u` is idle or closed now */
        }
    }
    return 0;
}

/* Connecting `u` failed (`why`): drop it and send the client's request to
 * another server of its arm when that is safe, else answer `status`. */
static void http_up_connect_failed(struct http_up *u, const char *why, int status,
                                   enum stats_arm_field what)
{
    struct http_client *cl = u->cl;
    pool_server_warn(u->hp->pool, u->server, "connect to %s failed: %s",
                     http_server_spec(u->hp, u->server), why);
    pool_server_failed(u->hp->pool, u->server);
    http_client_drop_up(cl, false);
    if (cl->idempotent && cl->ntried < HTTP_MAX_TRIES) {
        http_dispatch(cl);
    } else {
        http_upstream_failed(cl, status, status == 504 ? "upstream connect timed out"
                                                       : "upstream refused the connection",
                             what);
    }
    http_client_kick(cl);
}

static void http_up_timer(struct ev_loop *loop, struct ev_timer *t)
{
    (void)loop;
    struct http_up *u = t->data;
    if (u->cl == NULL) {
        http_up_close(u); /* idle too long */
        return;
    }
    if (u->connecting) {
        stats_add(stats_server(http_stats(u->hp), u->server, SS_SERVER_TIMEDOUT), 1);
        http_up_connect_failed(u, "timed out", 504, SA_TIMEOUTS);
        return;
    }
    http_up_fail(u, 504, "upstream timed out", SA_TIMEOUTS);
}

static void http_up_arm_timer(struct http_up *u)
{
    uint64_t t = u->hp->cp->timeout_request;
    ev_timer_stop(u->hp->wk->loop, &u->timer);
    if (t != 0) {
        ev_timer_start(u->hp->wk->loop, &u->timer, t);
    }
}

/* Whether `u`, failing now, may be a kept-alive connection the server
 * closed as the request arrived (reused, nothing received from it), with a
 * request that may be sent again (idempotent, tries left). */
static bool http_up_stale(const struct http_up *u)
{
    const struct http_client *cl = u->cl;
    return u->reused && !u->got_bytes && cl->idempotent && cl->ntried < HTTP_MAX_TRIES;
}

static void http_up_pump(struct http_up *u)
{
    struct http_pool *hp = u->hp;
    struct buf_pool *bufs = &hp->wk->bufs;
    for (int rounds = 0; rounds < 64 && !u->gone; rounds++) {
        struct http_client *cl = u->cl;
        bool progress = false;
        if (cl != NULL && cl->up.bytes > 0 && u->c.writable) {
            ssize_t w = conn_write(&u->c, &cl->up, bufs);
            if (w == -1) {
                if (http_up_stale(u)) {
                    goto retry;
                }
                http_up_fail(u, 502, strerror(errno), SA_UPSTREAM_ERRORS);
                return;
            }
            if (w > 0) {
                progress = true;
                http_up_arm_timer(u);
                if (cl->up.bytes < hp->wk->queue_limit) {
                    http_client_kick(cl); /* room for more request body */
                }
            }
        }
        bool room = cl == NULL || cl->out.bytes < hp->wk->queue_limit;
        if (u->c.readable && !u->c.eof && room) {
            ssize_t r = conn_read(&u->c, &u->in, bufs, hp->wk->queue_limit);
            if (r == -1) {
                if (cl != NULL && http_up_stale(u)) {
                    goto retry;
                }
                http_up_fail(u, 502, strerror(errno), SA_UPSTREAM_ERRORS);
                return;
            }
            if (r > 0) {
                u->got_bytes = true;
                progress = true;
                if (cl != NULL) {
                    http_up_arm_timer(u);
                }
            }
        }
        if (cl == NULL) {
            if (u->c.eof || u->in.bytes > 0) {
                http_up_close(u); /* idle connection closed or spoke out of turn */
            }
            return;
        }
        if (u->in.bytes > 0 && http_up_parse(u) == -1) {
            return;
        }
        if (u->c.eof && u->in.bytes == 0) {
            if (u->rsp.head.done && u->rsp.head.framing == HTTP_BODY_EOF &&
                http_parser_finish(&u->rsp) == 0) {
                u->rsp.msg_done = true;
                if (cl->rsp_chunked &&
                    buf_queue_append(&cl->out, bufs, "0\r\n\r\n", 5) == -1) {
                    cl->close_after = true;
                }
                stats_add(stats_server(http_stats(hp), u->server, SS_RESPONSES), 1);
                http_exchange_done(cl, false);
                http_client_kick(cl);
                return;
            }
            if (http_up_stale(u)) {
                goto retry;
            }
            http_up_fail(u, 502, "upstream closed the connection early", SA_UPSTREAM_ERRORS);
            return;
        }
        if (!progress) {
            return;
        }
    }
    return;
retry:
    /* A kept-alive connection the server had already closed: nothing of
     * this request was processed, so send it again on a new one (the bytes
     * sent on this one are spent: the request is queued again). */
    {
        struct http_client *cl = u->cl;
        if (http_request_again(cl) == -1) {
            http_up_fail(u, 502, "upstream closed the connection early", SA_UPSTREAM_ERRORS);
            return;
        }
        http_client_drop_up(cl, false);
        cl->ntried--; /* a stale connection is not a failed server */
        http_dispatch(cl);
        http_client_kick(cl);
    }
}

static void http_up_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    struct http_up *u = io->data;
    conn_note_events(&u->c, events);
    if (u->connecting) {
        int err = net_connect_result(io->fd);
        if (err != 0) {
            stats_add(stats_server(http_stats(u->hp), u->server, SS_SERVER_ERR), 1);
            http_up_connect_failed(u, strerror(err), 502, SA_UPSTREAM_ERRORS);
            return;
        }
        u->connecting = false;
        pool_server_conn(u->hp->pool, u->server, 1);
        u->c.writable = true;
        http_up_arm_timer(u);
    }
    http_up_pump(u);
}

/* A connection to `server` for `cl`: an idle one, or a new one. */
static struct http_up *http_up_get(struct http_client *cl, size_t server)
{
    struct http_pool *hp = cl->hp;
    struct http_up *u = hp->idle[server];
    if (u != NULL) {
        hp->idle[server] = u->next_idle;
        hp->nidle[server]--;
        u->next_idle = NULL;
        u->cl = cl;
        http_up_arm_timer(u);
        return u;
    }
    if (!pool_conn_begin(hp->pool)) {
        cl->busy = true;
        return NULL;
    }
    bool done = false;
    int fd = net_connect(&hp->pool->servers[server].addr, &done);
    if (fd == -1) {
        pool_conn_end(hp->pool);
        pool_server_warn(hp->pool, server, "connect to %s failed: %s",
                         http_server_spec(hp, server), strerror(errno));
        stats_add(stats_server(http_stats(hp), server, SS_SERVER_ERR), 1);
        pool_server_failed(hp->pool, server);
        return NULL;
    }
    u = slab_alloc(&hp->ups);
    if (u == NULL) {
        pool_conn_end(hp->pool);
        close(fd);
        return NULL;
    }
    u->counted = true;
    u->hp = hp;
    u->server = server;
    u->cl = cl;
    buf_queue_init(&u->in);
    http_parser_init(&u->rsp, false, hp->cp->limit_header, hp->cp->limit_line,
                     &hp->wk->heads, u, http_rsp_body);
    u->timer = (struct ev_timer){ .fn = http_up_timer, .data = u };
    u->kick = (struct ev_defer){ .fn = http_up_kicked, .data = u };
    u->release = (struct ev_defer){ .fn = http_up_release, .data = u };
    if (conn_open(&u->c, hp->wk->loop, fd, http_up_io, u) == -1) {
        pool_conn_end(hp->pool);
        close(fd);
        http_parser_free(&u->rsp);
        slab_free(&hp->ups, u);
        return NULL;
    }
    pool_server_use(hp->pool, server, 1);
    u->connecting = !done;
    if (done) {
        pool_server_conn(hp->pool, server, 1);
        u->c.writable = true;
        http_up_arm_timer(u);
    } else if (hp->cp->timeout_connect != 0) {
        ev_timer_start(hp->wk->loop, &u->timer, hp->cp->timeout_connect);
    }
    return u;
}

/* Send the current request to a server of its arm not tried yet. */
static void http_dispatch(struct http_client *cl)
{
    struct http_pool *hp = cl->hp;
    const char *why = "no upstream server reachable";
    while (cl->ntried < HTTP_MAX_TRIES) {
        int i = bal_pick(&hp->arm_bal[cl->arm], cl->tried, cl->ntried,
                         ev_now_us(hp->wk->loop));
        if (i == -1) {
            break;
        }
        if (cl->ntried > 0) { /* a retry: only within the budget */
            if (!budget_withdraw(&hp->pool->budget, hp->cp, ev_now(hp->wk->loop))) {
                stats_add(&http_stats(hp)->x[SX_RETRIES_DENIED], 1);
                why = "no upstream server reachable (retry budget spent)";
                break;
            }
            stats_add(&http_stats(hp)->x[SX_RETRIES], 1);
        }
        size_t server = (size_t)i;
        cl->tried[cl->ntried++] = (int)server;
        struct http_up *u = http_up_get(cl, server);
        if (u == NULL && cl->busy) {
            cl->busy = false;
            http_reject(cl, "too many upstream connections (max_connections)");
            return;
        }
        if (u == NULL) {
            if (!cl->idempotent) {
                break;
            }
            continue;
        }
        cl->u = u;
        bal_opened(&hp->arm_bal[cl->arm], (int)server);
        u->rsp.no_body = cl->req.head.method == HTTP_HEAD;
        stats_add(stats_server(http_stats(hp), server, SS_REQUESTS), 1);
        http_up_kick(u);
        return;
    }
    http_upstream_failed(cl, 502, why, SA_UPSTREAM_ERRORS);
}

/* ------------------------------------------------------------------ */
/* pool setup                                                           */

static void http_arms_follow(struct http_pool *hp);

int http_pool_init(struct pool *p)
{
    const struct conf_pool *cp = p->cp;
    struct http_pool *hp = calloc(1, sizeof(*hp));
    if (hp == NULL) {
        return -1;
    }
    hp->pool = p;
    hp->wk = p->wk;
    hp->cp = cp;
    slab_init(&hp->clients, sizeof(struct http_client), &hp->wk->slabs);
    slab_init(&hp->ups, sizeof(struct http_up), &hp->wk->slabs);
    hp->arm_bal = calloc(cp->narms, sizeof(*hp->arm_bal));
    hp->idle = calloc(p->nslots, sizeof(*hp->idle));
    hp->nidle = calloc(p->nslots, sizeof(*hp->nidle));
    hp->arm_gen = calloc(p->nslots, sizeof(*hp->arm_gen));
    if (hp->arm_bal == NULL || hp->idle == NULL || hp->nidle == NULL || hp->arm_gen == NULL) {
        slab_fini(&hp->clients); /* leave the worker's set */
        slab_fini(&hp->ups);
        free(hp->arm_bal);
        free(hp->idle);
        free(hp->nidle);
        free(hp->arm_gen);
        free(hp);
        return -1;
    }
    for (size_t a = 0; a < cp->narms; a++) {
        if (bal_init_servers(&hp->arm_bal[a], cp->balance, p->servers, p->nslots,
                             p->wk->seed ^ (a + 1) * 0x9E3779B97F4A7C15ull) == -1) {
            p->proto = hp;
            http_pool_fini(p);
            return -1;
        }
    }
    p->proto = hp;
    http_arms_follow(hp);
    return 0;
}

/* Slot `i` serves arm `a`: the arm's configured servers and the slots of
 * its discovery (a plain pool's one arm: the pool's discovery). */
static bool http_arm_member(const struct pool *p, size_t a, size_t i)
{
    const struct conf_pool *cp = p->cp;
    const struct conf_arm *arm = &cp->arms[a];
    if (i >= arm->first && i < arm->first + arm->n) {
        return true;
    }
    const struct conf_discovery *d = conf_pool_discovery(cp, cp->split ? (int)a
                                                                       : CONF_DISC_POOL);
    return d != NULL && i >= d->first && i < d->first + d->max_endpoints;
}

/* Each arm's balancer follows the pool's: members only, usable only. */
static void http_arms_follow(struct http_pool *hp)
{
    struct pool *p = hp->pool;
    for (size_t a = 0; a < hp->cp->narms; a++) {
        for (size_t i = 0; i < p->nslots; i++) {
            if (hp->arm_gen[i] != p->gen[i] && http_arm_member(p, a, i)) {
                bal_reset_server(&hp->arm_bal[a], i, p->servers[i].weight);
            }
            bal_set_down(&hp->arm_bal[a], i, !http_arm_member(p, a, i) ||
                         !pool_server_usable(p, i));
        }
    }
    for (size_t i = 0; i < p->nslots; i++) {
        hp->arm_gen[i] = p->gen[i];
    }
}

void http_pool_sync(struct pool *p)
{
    struct http_pool *hp = p->proto;
    http_arms_follow(hp);
    for (size_t i = 0; i < p->nslots; i++) { /* left the table: no more reuse */
        while (p->state[i] != SERVER_ACTIVE && hp->idle[i] != NULL) {
            http_up_close(hp->idle[i]);
        }
    }
}
void http_pool_fini(struct pool *p)
{
    struct http_pool *hp = p->proto;
    if (hp == NULL) {
        return;
    }
    for (size_t s = 0; hp->idle != NULL && s < hp->pool->nslots; s++) {
        while (hp->idle[s] != NULL) {
            http_up_close(hp->idle[s]);
        }
    }
    /* The loop has stopped: run the releases just queued. */
    ev_run_pending(hp->wk->loop);
    for (size_t a = 0; hp->arm_bal != NULL && a < hp->cp->narms; a++) {
        bal_free(&hp->arm_bal[a]);
    }
    free(hp->arm_bal);
    free(hp->idle);
    free(hp->nidle);
    free(hp->arm_gen);
    slab_fini(&hp->clients);
    slab_fini(&hp->ups);
    free(hp);
    p->proto = NULL;
}

/* The client's address as text, for X-Forwarded-For and stickiness. */
static void http_peer_text(int fd, char *out, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    out[0] = '\0';
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == -1) {
        return;
    }
    if (ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)len);
    } else if (ss.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)len);
    } else {
        snprintf(out, len, "unix");
    }
}

/* A client of pool `p` on `fd`, registered and timed; NULL (logged) when
 * it could not be set up (the caller closes fd). */
static struct http_client *http_client_open(struct pool *p, int fd)
{
    struct http_pool *hp = p->proto;
    struct http_client *cl = slab_alloc(&hp->clients);
    if (cl == NULL) {
        log_error(hp->wk->log, "pool '%s': out of memory for a client", p->cp->name);
        return NULL;
    }
    cl->hp = hp;
    cl->state = HC_HEAD;
    buf_queue_init(&cl->in);
    buf_queue_init(&cl->out);
    buf_queue_init(&cl->up);
    http_parser_init(&cl->req, true, p->cp->limit_header, p->cp->limit_line,
                     &hp->wk->heads, cl, http_req_body);
    http_peer_text(fd, cl->addr, sizeof(cl->addr));
    cl->timer = (struct ev_timer){ .fn = http_client_timer, .data = cl };
    cl->kick = (struct ev_defer){ .fn = http_client_kicked, .data = cl };
    cl->release = (struct ev_defer){ .fn = http_client_release, .data = cl };
    net_set_nodelay(fd, &p->cp->listen);
    if (conn_open(&cl->c, hp->wk->loop, fd, http_client_io, cl) == -1) {
        log_error(hp->wk->log, "pool '%s': epoll: %s", p->cp->name, strerror(errno));
        http_parser_free(&cl->req);
        slab_free(&hp->clients, cl);
        return NULL;
    }
    if (p->cp->timeout_idle != 0) {
        ev_timer_start(hp->wk->loop, &cl->timer, p->cp->timeout_idle);
    }
    wk_item_add(hp->wk, &cl->item, http_client_abort, http_client_drain);
    return cl;
}

int http_client_start(struct pool *p, int fd)
{
    return http_client_open(p, fd) == NULL ? -1 : 0;
}

int http_client_adopt(struct pool *p, const struct handoff_item *it)
{
    struct http_client *cl = http_client_open(p, it->fd);
    if (cl == NULL) {
        return -1;
    }
    if (buf_queue_append(&cl->in, &cl->hp->wk->bufs, it->data, it->len) == -1) {
        log_error(cl->hp->wk->log, "pool '%s': out of memory for a client", p->cp->name);
        http_client_close(cl, true);
        return 0; /* closed: counted as a client that came and went */
    }
    cl->c.readable = true; /* what it sent meanwhile waits in the socket */
    ev_defer(cl->hp->wk->loop, &cl->kick);
    return 0;
}
