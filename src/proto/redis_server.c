/* redis_server: the redis pool's server connections (pipelined, FIFO
 * reply matching, handshake, timeouts, failure answering), ejection from
 * the ring, and the pool's per-worker setup (see redis_int.h). */
#include "redis_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void redis_sconn_pump(struct redis_sconn *sc);

/* Both reply parsers share the feed contract and its codes. */
_Static_assert((int)RESP_AGAIN == (int)MC_AGAIN && (int)RESP_ERROR == (int)MC_ERROR &&
                   (int)RESP_DONE == (int)MC_DONE,
               "resp and mc_proto return the same codes");

/* Get the reply parser ready for the next reply. */
static void redis_sconn_frame_reset(struct redis_sconn *sc)
{
    if (sc->rp->mc) {
        mc_rsp_init(&sc->mrsp);
    } else {
        resp_rsp_init(&sc->rsp);
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
    return sc->rp->pool->servers[sc->server].spec;
}

/* Rebuild the ring from the servers not ejected. */
static void redis_ring_rebuild(struct redis_pool *rp)
{
    struct ring fresh;
    if (ring_build_servers(&fresh, rp->cp, rp->pool->servers, rp->nservers, rp->live) == -1) {
        log_error(rp->wk->log, "pool '%s': out of memory rebuilding the ring; keeping the "
                  "old one", rp->cp->name);
        return;
    }
    ring_free(&rp->ring);
    rp->ring = fresh;
}

/* In the ring: in the table (not draining), not ejected for failures, and
 * (with auto_eject_hosts) not taken out by health checks. */
static bool redis_server_live(const struct redis_pool *rp, size_t i)
{
    const struct pool *p = rp->pool;
    return p->state[i] == SERVER_ACTIVE && !rp->servers[i].ejected &&
           !(rp->cp->auto_eject_hosts && p->down[i]);
}

static int redis_sconn_connect(struct redis_sconn *sc);

/* A connection to a slot that left the table, with nothing in flight:
 * closed quietly (not a failure), and the slot's use given back. */
static void redis_sconn_retire(struct redis_sconn *sc)
{
    struct redis_pool *rp = sc->rp;
    if (sc->state == SC_DOWN || sc->head != NULL) {
        return;
    }
    if (sc->state == SC_UP) {
        pool_server_conn(rp->pool, sc->server, -1);
    }
    conn_close(&sc->c, rp->wk->loop);
    ev_timer_stop(rp->wk->loop, &sc->timer);
    sc->state = SC_DOWN;
    buf_queue_clear(&sc->out, &rp->wk->bufs);
    buf_queue_clear(&sc->in, &rp->wk->bufs);
    buf_cursor_reset(&sc->cur, &sc->in);
    redis_sconn_frame_reset(sc);
    sc->unsent = NULL;
    sc->appended = sc->written = 0;
    pool_server_use(rp->pool, sc->server, -1);
}

void redis_pool_sync(struct pool *p)
{
    struct redis_pool *rp = p->proto;
    bool changed = false;
    for (size_t i = 0; i < rp->nservers; i++) {
        struct redis_server *s = &rp->servers[i];
        if (p->state[i] != SERVER_ACTIVE) {
            for (unsigned k = 0; k < s->nconns; k++) {
                redis_sconn_retire(&s->conns[k]);
            }
        } else if (s->gen != p->gen[i]) { /* a new endpoint in this slot */
            s->gen = p->gen[i];
            s->failures = 0;
            s->ejected = false;
            ev_timer_stop(rp->wk->loop, &s->readmit);
            for (unsigned k = 0; rp->cp->preconnect && k < s->nconns; k++) {
                (void)redis_sconn_connect(&s->conns[k]);
            }
        }
        bool live = redis_server_live(rp, i);
        changed |= live != rp->live[i];
        rp->live[i] = live;
    }
    if (changed) {
        redis_ring_rebuild(rp);
    }
}

static void redis_server_readmit(struct ev_loop *loop, struct ev_timer *t)
{
    (void)loop;
    struct redis_server *s = t->data;
    struct redis_pool *rp = s->rp;
    s->ejected = false;
    rp->live[s->index] = redis_server_live(rp, s->index);
    redis_ring_rebuild(rp);
    log_notice(rp->wk->log, "pool '%s': server %s back in the ring after %llu ms",
               rp->cp->name, rp->pool->servers[s->index].spec,
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
             cp->name, rp->pool->servers[s->index].spec,
             (unsigned long long)cp->server_retry_timeout, s->failures);
}

/* Whether `sc` is up with nothing in flight, nothing unread and nothing
 * to write. */
static bool redis_sconn_idle(const struct redis_sconn *sc)
{
    return sc->state == SC_UP && sc->head == NULL && sc->out.bytes == 0 && sc->in.bytes == 0;
}

/* Close the connection and answer every message it held with `why`,
 * blaming no one (the caller has counted the failure, if any). */
static void redis_sconn_drop(struct redis_sconn *sc, const char *why)
{
    struct redis_pool *rp = sc->rp;
    struct ev_loop *loop = rp->wk->loop;
    bool used = sc->state != SC_DOWN;
    if (sc->state == SC_UP) {
        pool_server_conn(rp->pool, sc->server, -1);
    }
    conn_close(&sc->c, loop);
    ev_timer_stop(loop, &sc->timer);
    sc->state = SC_DOWN;
    buf_queue_clear(&sc->out, &rp->wk->bufs);
    buf_queue_clear(&sc->in, &rp->wk->bufs);
    buf_cursor_reset(&sc->cur, &sc->in);
    redis_sconn_frame_reset(sc);
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
    if (used) {
        pool_server_use(rp->pool, sc->server, -1); /* last: the slot may be recycled */
    }
}

/* The server closed (or reset) the connection with nothing of legate's in
 * flight: its idle timeout (`timeout` in redis.conf, memcached's
 * idle_timeout) or a restart. Nothing is lost and nothing counts toward
 * ejection; the next request connects again, and a refused connect is a
 * failure then. */
static void redis_sconn_closed_idle(struct redis_sconn *sc, enum stats_server_field what)
{
    struct redis_pool *rp = sc->rp;
    stats_add(redis_sstat(sc, what), 1);
    log_info(rp->wk->log, "pool '%s': server %s closed an idle connection", rp->cp->name,
             redis_server_spec(sc));
    redis_sconn_drop(sc, "closed the connection");
}

/* The server failed: log it, count it under `what` (server_eof, _err or
 * _timedout) and toward ejection, then drop the connection. */
static void redis_sconn_fail(struct redis_sconn *sc, enum stats_server_field what,
                             const char *why)
{
    if (sc->head != NULL || sc->state != SC_DOWN) {
        pool_server_warn(sc->rp->pool, sc->server, "server %s: %s", redis_server_spec(sc), why);
        stats_add(redis_sstat(sc, what), 1);
        redis_server_failed(&sc->rp->servers[sc->server]);
    }
    redis_sconn_drop(sc, why);
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
    struct redis_msg *m = bad ? NULL : redis_msg_new(rp, NULL);
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
    const struct conf_server *s = &rp->pool->servers[sc->server];
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
    pool_server_use(rp->pool, sc->server, 1);
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
void redis_sconn_push(struct redis_sconn *sc, struct redis_msg *m, uint64_t bytes)
{
    m->sent_at = ev_now(sc->rp->wk->loop);
    m->sent_us = ev_now_us(sc->rp->wk->loop);
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

/* Send what is queued and read what has come (connecting first if
 * needed), from a deferred callback at the end of the loop iteration: once
 * however many clients queued requests in it, and so a client never sees
 * its own request completed (or failed) inside the call that queued it. */
void redis_sconn_kick(struct redis_sconn *sc)
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
        if (rp->mc && sc->mrsp.size == 0 && sc->head != NULL) {
            sc->mrsp.until_mn = sc->head->mn_tail; /* a reply begins: is it followed by MN? */
        }
        int rc = rp->mc ? mc_rsp_feed(&sc->mrsp, sc->cur.p, avail, &used)
                        : resp_rsp_feed(&sc->rsp, sc->cur.p, avail, &used, &resp_default_limits);
        sc->cur.p += used;
        if (rc == RESP_AGAIN) {
            continue;
        }
        if (rc == RESP_ERROR) {
            redis_sconn_fail(sc, SS_SERVER_ERR, rp->mc ? sc->mrsp.error : sc->rsp.error);
            return;
        }
        struct redis_msg *m = sc->head;
        if (m == NULL) {
            redis_sconn_fail(sc, SS_SERVER_ERR, "sent a reply nobody asked for");
            return;
        }
        uint64_t size = rp->mc ? sc->mrsp.size : sc->rsp.size;
        uint64_t keep = rp->mc ? size - sc->mrsp.tail : size; /* without legate's MN */
        redis_sconn_forget(sc, m);
        rp->servers[sc->server].failures = 0;
        stats_latency(rp->pool->stats, sc->server, ev_now_us(rp->wk->loop) - m->sent_us);
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
            redis_sconn_frame_reset(sc);
            redis_msg_free(rp, m);
            if (first == '-') {
                redis_sconn_fail(sc, SS_SERVER_ERR, "refused legate's AUTH or SELECT (check "
                                                    "redis_auth, redis_user, redis_db)");
                return;
            }
            continue;
        }
        /* Next in its client's order (the usual case): straight to the
         * client's output, without a buffer of its own. Otherwise it waits
         * for the replies before it: inside the message when short, else
         * in m->reply. */
        struct redis_client *cl = m->parent == NULL && !m->quiet ? m->client : NULL;
        struct buf_queue *to = cl != NULL && cl->head == m ? &cl->out : &m->reply;
        if ((cl != NULL || m->parent != NULL) && to == &m->reply &&
            keep <= REDIS_SMALL_REPLY) {
            buf_queue_peek(&sc->in, 0, m->small, (size_t)keep);
            m->nsmall = (uint8_t)keep;
        } else if ((cl != NULL || m->parent != NULL) &&
                   buf_queue_append_range(to, &rp->wk->bufs, &sc->in, 0, keep) == -1) {
            redis_reply_text(rp, m, redis_oom_reply(rp));
        }
        buf_queue_consume(&sc->in, &rp->wk->bufs, (size_t)size);
        buf_cursor_reset(&sc->cur, &sc->in);
        redis_sconn_frame_reset(sc);
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
            if (r == -1 && errno == ENOMEM) {
                /* legate's shortage, not the server's: nothing counts
                 * toward ejection, but the reply stream is lost with it */
                pool_server_warn(rp->pool, sc->server, "server %s: out of memory for a "
                                 "reply; closing the connection", redis_server_spec(sc));
                redis_sconn_drop(sc, "reply lost (legate out of memory)");
                return;
            }
            if (r == -1 && redis_sconn_idle(sc)) {
                redis_sconn_closed_idle(sc, SS_SERVER_ERR);
                return;
            }
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
                if (sc->head == NULL && rp->pool->state[sc->server] != SERVER_ACTIVE) {
                    redis_sconn_retire(sc); /* drained: the slot left the table */
                    return;
                }
            }
        }
        if (sc->c.eof && redis_sconn_idle(sc)) {
            redis_sconn_closed_idle(sc, SS_SERVER_EOF);
            return;
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
    /* Pumped once, after every event of this loop iteration: requests the
     * iteration's clients queue for this server leave in one write, not one
     * write before its reply event and another after (each write is a TCP
     * segment and often a wake-up of the server). */
    redis_sconn_kick(sc);
}

/* The connection that carries `cl`'s requests to server `i`: always the
 * same one (the client's lane), so a server runs one client's requests in
 * the order they were sent and a read sees the write before it. Clients
 * take lanes in turn, which spreads them over the conns. */
struct redis_sconn *redis_pick_conn(const struct redis_client *cl, size_t i)
{
    struct redis_server *s = &cl->rp->servers[i];
    return &s->conns[cl->lane % s->nconns];
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
    rp->mc = cp->proto == CONF_PROTO_MEMCACHE;
    rp->mlimits = mc_default_limits;
    slab_init(&rp->msgs, sizeof(struct redis_msg), &p->wk->slabs);
    slab_init(&rp->clients, sizeof(struct redis_client), &p->wk->slabs);
    if (cp->limit_args != 0) {
        rp->limits.max_args = rp->mlimits.max_tokens = (uint32_t)cp->limit_args;
    }
    if (cp->limit_bulk != 0) {
        rp->limits.max_bulk = rp->mlimits.max_data = cp->limit_bulk;
    }
    if (cp->limit_request != 0) {
        rp->limits.max_request = rp->mlimits.max_request = cp->limit_request;
    }
    if (cp->limit_inline != 0) {
        rp->limits.max_inline = (uint32_t)cp->limit_inline;
        rp->mlimits.max_line = cp->limit_inline;
    }
    rp->nservers = p->nslots;
    rp->servers = calloc(rp->nservers, sizeof(*rp->servers));
    rp->live = calloc(rp->nservers, sizeof(*rp->live));
    for (size_t i = 0; rp->live != NULL && i < rp->nservers; i++) {
        rp->live[i] = p->state[i] == SERVER_ACTIVE;
    }
    if (rp->servers == NULL || rp->live == NULL ||
        ring_build_servers(&rp->ring, cp, p->servers, rp->nservers, rp->live) == -1) {
        slab_fini(&rp->msgs); /* leave the worker's set */
        slab_fini(&rp->clients);
        free(rp->servers);
        free(rp->live);
        free(rp);
        return -1;
    }
    for (size_t i = 0; i < rp->nservers; i++) {
        struct redis_server *s = &rp->servers[i];
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
            redis_sconn_frame_reset(sc);
            sc->timer = (struct ev_timer){ .fn = redis_sconn_timer, .data = sc };
            sc->again = (struct ev_defer){ .fn = redis_sconn_again, .data = sc };
        }
    }
    p->proto = rp;
    if (cp->preconnect) {
        for (size_t i = 0; i < rp->pool->shared->tab.nstatic; i++) {
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
    free(rp->spare_args.args);
    slab_fini(&rp->msgs);
    slab_fini(&rp->clients);
    free(rp);
    p->proto = NULL;
}
