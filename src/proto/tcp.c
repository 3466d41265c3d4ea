/* tcp: L4 sessions with connect failover and backpressure (see tcp.h). */
#include "tcp.h"
#include "../core/conn.h"
#include "../core/log.h"
#include "../core/net.h"
#include "../upstream/pool.h"
#include "../wk.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum tcp_state { TCP_CONNECTING, TCP_OPEN, TCP_DONE };

struct tcp_session {
    struct wk_item item;      /* first: the worker's list links to it */
    struct pool *pool;
    struct wk *wk;
    enum tcp_state state;
    struct conn client;
    struct conn server;
    struct buf_queue up;      /* client -> server */
    struct buf_queue down;    /* server -> client */
    struct ev_timer timer;    /* connect timeout, then idle timeout */
    struct ev_defer retry;    /* next connect attempt, after this batch */
    struct ev_defer release;  /* free, after this batch */
    uint64_t last_active;
    int server_idx;           /* index in the pool's servers, -1 none */
    bool reset;               /* ended by a reset or write error */
    uint64_t connect_us;      /* when the current connect began (p2c_ewma) */
    bool pending;             /* holds a max_pending place until connected */
    int tried[CONF_MAX_RETRIES + 1];
    unsigned ntried;
};

static void tcp_close(struct tcp_session *s);
static void tcp_connect_next(struct tcp_session *s);
static void tcp_pump(struct tcp_session *s);

static const char *tcp_server_spec(const struct tcp_session *s)
{
    return s->pool->servers[s->server_idx].spec;
}

static void tcp_release(struct ev_loop *loop, struct ev_defer *d)
{
    (void)loop;
    struct tcp_session *s = d->data;
    free(s);
}

/* End the session: close both sockets now, free the memory after the
 * current batch of events (they may still name our conns). */
static void tcp_close(struct tcp_session *s)
{
    if (s->state == TCP_DONE) {
        return;
    }
    struct ev_loop *loop = s->wk->loop;
    if (s->pending) {
        pool_pending_end(s->pool);
        s->pending = false;
    }
    if (s->server_idx != -1 && s->server.open) {
        pool_server_drop(s->pool, (size_t)s->server_idx);
        if (s->state == TCP_OPEN) {
            pool_server_conn(s->pool, (size_t)s->server_idx, -1);
        }
    }
    bool err = s->reset;
    s->state = TCP_DONE;
    conn_close(&s->client, loop);
    conn_close(&s->server, loop);
    ev_timer_stop(loop, &s->timer);
    buf_queue_clear(&s->up, &s->wk->bufs);
    buf_queue_clear(&s->down, &s->wk->bufs);
    pool_client_closed(s->pool, err);
    wk_item_del(s->wk, &s->item);
    ev_defer(loop, &s->release);
}

static void tcp_abort(struct wk_item *it)
{
    tcp_close((struct tcp_session *)it);
}

static void tcp_touch(struct tcp_session *s)
{
    s->last_active = ev_now(s->wk->loop);
}

static void tcp_timer_fired(struct ev_loop *loop, struct ev_timer *t)
{
    struct tcp_session *s = t->data;
    if (s->state == TCP_CONNECTING) {
        pool_server_warn(s->pool, (size_t)s->server_idx, "connect to %s timed out after %llu ms",
                         tcp_server_spec(s), (unsigned long long)s->pool->cp->timeout_connect);
        pool_server_drop(s->pool, (size_t)s->server_idx);
        conn_close(&s->server, loop);
        stats_add(stats_server(s->pool->stats, (size_t)s->server_idx, SS_SERVER_TIMEDOUT), 1);
        pool_server_failed(s->pool, (size_t)s->server_idx);
        tcp_connect_next(s);
        return;
    }
    uint64_t idle = s->pool->cp->timeout_idle;
    uint64_t quiet = ev_now(loop) - s->last_active;
    if (quiet >= idle) {
        log_info(s->wk->log, "pool '%s': closing session idle for %llu ms",
                 s->pool->cp->name, (unsigned long long)quiet);
        tcp_close(s);
        return;
    }
    ev_timer_start(loop, t, idle - quiet);
}

static void tcp_opened(struct tcp_session *s)
{
    struct ev_loop *loop = s->wk->loop;
    s->state = TCP_OPEN;
    if (s->pending) {
        pool_pending_end(s->pool);
        s->pending = false;
    }
    pool_server_conn(s->pool, (size_t)s->server_idx, 1);
    uint64_t now_us = ev_now_us(loop);
    bal_observe(&s->pool->bal, (size_t)s->server_idx, now_us - s->connect_us, now_us);
    /* A session is a tcp pool's request; its latency is the connect. */
    stats_add(stats_server(s->pool->stats, (size_t)s->server_idx, SS_REQUESTS), 1);
    stats_latency(s->pool->stats, (size_t)s->server_idx, now_us - s->connect_us);
    pool_server_ok(s->pool, (size_t)s->server_idx);
    s->server.writable = true;
    ev_timer_stop(loop, &s->timer);
    if (s->pool->cp->timeout_idle != 0) {
        tcp_touch(s);
        ev_timer_start(loop, &s->timer, s->pool->cp->timeout_idle);
    }
    tcp_pump(s);
}

static void tcp_server_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    struct tcp_session *s = io->data;
    conn_note_events(&s->server, events);
    if (s->state != TCP_CONNECTING) {
        tcp_pump(s);
        return;
    }
    /* Only SO_ERROR decides: a server that answers and closes at once
     * reports RDHUP together with a successful connect. */
    int err = net_connect_result(io->fd);
    if (err == 0) {
        tcp_opened(s);
        return;
    }
    pool_server_warn(s->pool, (size_t)s->server_idx, "connect to %s failed: %s",
                     tcp_server_spec(s), strerror(err ? err : ECONNRESET));
    pool_server_drop(s->pool, (size_t)s->server_idx);
    conn_close(&s->server, s->wk->loop);
    stats_add(stats_server(s->pool->stats, (size_t)s->server_idx, SS_SERVER_ERR), 1);
    pool_server_failed(s->pool, (size_t)s->server_idx);
    ev_timer_stop(s->wk->loop, &s->timer);
    /* Events for the closed socket may follow in this batch and point at
     * s->server: connect the next server once the batch is over. */
    ev_defer(s->wk->loop, &s->retry);
}

static void tcp_retry(struct ev_loop *loop, struct ev_defer *d)
{
    (void)loop;
    struct tcp_session *s = d->data;
    if (s->state == TCP_CONNECTING) {
        tcp_connect_next(s);
    }
}

/* Connect to the next untried server; close the client when the attempts
 * are used up. */
static void tcp_connect_next(struct tcp_session *s)
{
    const struct conf_pool *cp = s->pool->cp;
    struct ev_loop *loop = s->wk->loop;
    for (;;) {
        if (s->ntried > cp->retries) {
            pool_warn(s->pool, "no server reachable after %u attempts, closing client",
                      s->ntried);
            stats_add(&s->pool->stats->f[SP_FORWARD_ERROR], 1);
            tcp_close(s);
            return;
        }
        int i = bal_pick(&s->pool->bal, s->tried, s->ntried, ev_now_us(loop));
        if (i == -1) {
            pool_warn(s->pool, "every server failed, closing client");
            stats_add(&s->pool->stats->f[SP_FORWARD_ERROR], 1);
            tcp_close(s);
            return;
        }
        if (s->ntried > 0) { /* a retry: only within the budget */
            if (!budget_withdraw(&s->pool->budget, cp, ev_now(loop))) {
                log_info(s->wk->log, "pool '%s': retry budget spent, closing client", cp->name);
                stats_add(&s->pool->stats->x[SX_RETRIES_DENIED], 1);
                stats_add(&s->pool->stats->f[SP_FORWARD_ERROR], 1);
                tcp_close(s);
                return;
            }
            stats_add(&s->pool->stats->x[SX_RETRIES], 1);
        }
        if (!pool_conn_begin(s->pool)) {
            log_info(s->wk->log, "pool '%s': max_connections %u reached, closing client",
                     cp->name, cp->max_connections);
            stats_add(&s->pool->stats->x[SX_REJECTED], 1);
            tcp_close(s);
            return;
        }
        s->tried[s->ntried++] = i;
        s->server_idx = i;
        s->connect_us = ev_now_us(loop);
        bool done = false;
        int fd = net_connect(&s->pool->servers[i].addr, &done);
        if (fd == -1) {
            pool_conn_end(s->pool);
            pool_server_warn(s->pool, (size_t)i, "connect to %s failed: %s",
                             s->pool->servers[i].spec, strerror(errno));
            stats_add(stats_server(s->pool->stats, (size_t)i, SS_SERVER_ERR), 1);
            pool_server_failed(s->pool, (size_t)i);
            continue;
        }
        if (cp->tcpkeepalive) {
            int one = 1;
            (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        }
        if (conn_open(&s->server, loop, fd, tcp_server_io, s) == -1) {
            pool_conn_end(s->pool);
            close(fd);
            tcp_close(s);
            return;
        }
        pool_server_take(s->pool, (size_t)i);
        if (done) {
            tcp_opened(s);
            return;
        }
        if (cp->timeout_connect != 0) {
            ev_timer_start(loop, &s->timer, cp->timeout_connect);
        }
        return;
    }
}

static void tcp_client_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    struct tcp_session *s = io->data;
    conn_note_events(&s->client, events);
    tcp_pump(s);
}

/* Move what can move in one direction, counting the bytes written in the
 * server's `sent` counter. Returns 1 if anything happened, 0 if nothing
 * could, -1 if the session must end (reset or write error). */
static int tcp_flow(struct tcp_session *s, struct conn *from, struct conn *to,
                    struct buf_queue *q, bool to_ready, enum stats_server_field sent)
{
    struct buf_pool *bufs = &s->wk->bufs;
    int moved = 0;
    if (from->readable && !from->eof && q->bytes < s->wk->queue_limit) {
        ssize_t r = conn_read(from, q, bufs, s->wk->queue_limit);
        if (r == -1) {
            return -1;
        }
        if (r >= 0) {
            moved = 1; /* data or EOF */
        }
    }
    if (to_ready && to->writable && q->bytes > 0) {
        ssize_t w = conn_write(to, q, bufs);
        if (w == -1) {
            return -1;
        }
        if (w > 0) {
            stats_add(stats_server(s->pool->stats, (size_t)s->server_idx, sent), w);
            moved = 1;
        }
    }
    if (to_ready && from->eof && q->bytes == 0 && !to->shut_wr) {
        conn_shutdown_write(to);
        moved = 1;
    }
    return moved;
}

static void tcp_pump(struct tcp_session *s)
{
    for (;;) {
        if (s->state == TCP_DONE) {
            return;
        }
        bool open = s->state == TCP_OPEN;
        int a = tcp_flow(s, &s->client, &s->server, &s->up, open, SS_REQUEST_BYTES);
        int b = open ? tcp_flow(s, &s->server, &s->client, &s->down, true, SS_RESPONSE_BYTES)
                     : 0;
        if (a == -1 || b == -1) {
            log_debug(s->wk->log, "pool '%s': session reset: %s", s->pool->cp->name,
                      strerror(errno));
            tcp_close(s);
            return;
        }
        if (open && s->client.eof && s->server.eof && s->client.shut_wr &&
            s->server.shut_wr) {
            tcp_close(s); /* both halves finished */
            return;
        }
        if (a == 0 && b == 0) {
            return;
        }
        if (open) {
            tcp_touch(s);
        }
    }
}

int tcp_session_start(struct pool *p, int fd)
{
    struct wk *w = p->wk;
    if (!pool_pending_begin(p)) {
        log_info(w->log, "pool '%s': max_pending %u connects in flight, closing new client",
                 p->cp->name, p->cp->max_pending);
        stats_add(&p->stats->x[SX_REJECTED], 1);
        return -1;
    }
    struct tcp_session *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        pool_pending_end(p);
        log_error(w->log, "pool '%s': out of memory for a session", p->cp->name);
        return -1;
    }
    s->pending = true;
    budget_deposit(&p->budget, p->cp, ev_now(w->loop));
    s->pool = p;
    s->wk = w;
    s->state = TCP_CONNECTING;
    s->server_idx = -1;
    s->server.io.fd = -1;
    buf_queue_init(&s->up);
    buf_queue_init(&s->down);
    s->timer = (struct ev_timer){ .fn = tcp_timer_fired, .data = s };
    s->retry = (struct ev_defer){ .fn = tcp_retry, .data = s };
    s->release = (struct ev_defer){ .fn = tcp_release, .data = s };
    net_set_nodelay(fd, &p->cp->listen);
    if (conn_open(&s->client, w->loop, fd, tcp_client_io, s) == -1) {
        log_error(w->log, "pool '%s': epoll: %s", p->cp->name, strerror(errno));
        pool_pending_end(p);
        free(s);
        return -1;
    }
    wk_item_add(w, &s->item, tcp_abort, NULL); /* a byte stream is never known idle */
    tcp_connect_next(s);
    return 0;
}
