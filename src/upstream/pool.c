/* pool: listeners, client limit and protocol hand-off (see pool.h). */
#include "pool.h"
#include "../core/log.h"
#include "../core/net.h"
#include "../proto/http.h"
#include "../proto/redis.h"
#include "../proto/tcp.h"
#include "../wk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

/* What each protocol does in a pool, by enum conf_proto: set up and tear
 * down its per-worker state, and take an accepted client. Protocols this
 * build cannot run are refused by the config. */
struct pool_proto {
    int (*init)(struct pool *p);
    void (*fini)(struct pool *p);
    int (*start)(struct pool *p, int fd);
    void (*sync)(struct pool *p); /* p->down changed; NULL: the balancer's alone */
    /* Take a client handed over at a reload (handoff.h); NULL: the
     * protocol's clients are never handed over. */
    int (*adopt)(struct pool *p, const struct handoff_item *it);
};

static const struct pool_proto pool_protos[] = {
    [CONF_PROTO_TCP] = { NULL, NULL, tcp_session_start, NULL, NULL },
    [CONF_PROTO_REDIS] = { redis_pool_init, redis_pool_fini, redis_client_start,
                           redis_pool_sync, redis_client_adopt },
    [CONF_PROTO_MEMCACHE] = { redis_pool_init, redis_pool_fini, redis_client_start,
                              redis_pool_sync, redis_client_adopt }, /* mc.h: the same */
    [CONF_PROTO_HTTP] = { http_pool_init, http_pool_fini, http_client_start, http_pool_sync,
                          http_client_adopt },
};

int pool_shared_reopen(struct pool_shared *sh, const struct conf *cf, const struct conf_pool *cp,
                       unsigned nworkers, struct handoff_hub *hub, struct pool_shared *prev,
                       const struct conf_pool *prev_cp, char *err, size_t errlen)
{
    if (handoff_box_init(&sh->box, hub, cp, nworkers) == -1) {
        snprintf(err, errlen, "pool '%s': out of memory", cp->name);
        return -1;
    }
    atomic_init(&sh->clients, 0);
    atomic_init(&sh->unix_users, nworkers);
    atomic_init(&sh->up_conns, 0);
    atomic_init(&sh->pending, 0);
    atomic_init(&sh->handed_over, false);
    if (server_table_init(&sh->tab, cp, nworkers) == -1) {
        snprintf(err, errlen, "pool '%s': out of memory", cp->name);
        return -1;
    }
    sh->is_unix = cp->listen.family == AF_UNIX;
    sh->nlfds = sh->is_unix ? 1 : nworkers;
    sh->lfds = malloc(sh->nlfds * sizeof(int));
    if (sh->lfds == NULL) {
        snprintf(err, errlen, "pool '%s': out of memory", cp->name);
        return -1;
    }
    for (size_t i = 0; i < sh->nlfds; i++) {
        sh->lfds[i] = -1;
    }
    bool same = prev != NULL && prev->lfds != NULL &&
                net_addr_equal(&prev_cp->listen, &cp->listen);
    for (size_t i = 0; i < sh->nlfds; i++) {
        if (same && i < prev->nlfds && prev->lfds[i] != -1) {
            sh->lfds[i] = fcntl(prev->lfds[i], F_DUPFD_CLOEXEC, 0);
        } else {
            sh->lfds[i] = net_listen(&cp->listen, cp->backlog, !sh->is_unix, cp->listen_mode);
        }
        if (sh->lfds[i] == -1) {
            snprintf(err, errlen, "%s:%d: pool '%s': cannot listen on %s: %s",
                     cf->path, cp->line, cp->name, cp->listen_spec, strerror(errno));
            return -1;
        }
    }
    if (same && sh->is_unix) {
        atomic_store(&prev->handed_over, true);
    }
    return 0;
}

int pool_shared_open(struct pool_shared *sh, const struct conf *cf,
                     const struct conf_pool *cp, unsigned nworkers, struct handoff_hub *hub,
                     char *err, size_t errlen)
{
    return pool_shared_reopen(sh, cf, cp, nworkers, hub, NULL, NULL, err, errlen);
}

void pool_shared_close(struct pool_shared *sh, const struct conf_pool *cp)
{
    if (sh == NULL) {
        return;
    }
    handoff_box_fini(&sh->box);
    server_table_free(&sh->tab);
    if (sh->lfds == NULL) {
        return;
    }
    for (size_t i = 0; i < sh->nlfds; i++) {
        if (sh->lfds[i] != -1) {
            close(sh->lfds[i]);
        }
    }
    if (sh->is_unix && sh->lfds[0] != -1 && !atomic_load(&sh->handed_over)) {
        /* workers never started */
        const struct sockaddr_un *un = (const struct sockaddr_un *)&cp->listen.ss;
        unlink(un->sun_path);
    }
    free(sh->lfds);
    sh->lfds = NULL;
}

static int pool_listen_fd(const struct pool *p)
{
    return p->shared->is_unix ? p->shared->lfds[0] : p->shared->lfds[p->wk->id];
}

/* A client on `fd`, accepted here or handed over (`handed`), joins the
 * pool under its client_connections limit. Returns false when it was
 * closed instead. */
static bool pool_take_client(struct pool *p, int fd, const struct handoff_item *handed)
{
    const struct pool_proto *pp = &pool_protos[p->cp->proto];
    unsigned limit = p->cp->client_connections;
    unsigned now = atomic_fetch_add(&p->shared->clients, 1) + 1;
    if (limit != 0 && now > limit) {
        atomic_fetch_sub(&p->shared->clients, 1);
        pool_warn(p, "client_connections limit %u reached, closing %s client", limit,
                  handed != NULL ? "a handed-over" : "new");
        close(fd);
        return false;
    }
    int rc = handed == NULL ? pp->start(p, fd)
           : pp->adopt != NULL ? pp->adopt(p, handed) : -1;
    if (rc == -1) {
        atomic_fetch_sub(&p->shared->clients, 1);
        close(fd);
        return false;
    }
    stats_add(&p->wk->stats.total_connections, 1);
    stats_add(&p->wk->stats.curr_connections, 1);
    stats_add(&p->stats->f[SP_CLIENT_CONNECTIONS], 1);
    return true;
}

/* A client was accepted on this worker's listener. */
static void pool_accepted(struct acceptor *a, int fd)
{
    (void)pool_take_client(a->data, fd, NULL);
}

void pool_adopt_handed(struct pool *p)
{
    struct handoff_box *box = &p->shared->box;
    if (!p->listening) {
        handoff_forward(box, p->wk->id);
        return;
    }
    struct handoff_item *it = handoff_take(box, p->wk->id);
    unsigned n = 0;
    while (it != NULL) {
        struct handoff_item *next = it->next;
        n += pool_take_client(p, it->fd, it);
        free(it);
        it = next;
    }
    if (n > 0) {
        log_notice(p->wk->log, "pool '%s': worker %u took over %u clients from the previous "
                 "configuration", p->cp->name, p->wk->id, n);
    }
}

static void pool_outlier_back(struct ev_loop *loop, struct ev_timer *t);

static void pool_free_view(struct pool *p)
{
    for (size_t i = 0; p->outlier != NULL && i < p->nslots; i++) {
        ev_timer_stop(p->wk->loop, &p->outlier[i].back);
    }
    free(p->outlier);
    p->outlier = NULL;
    bal_free(&p->bal);
    free(p->state);
    free(p->gen);
    free(p->down);
    free(p->server_log);
    p->state = NULL;
    p->gen = NULL;
    p->down = NULL;
    p->server_log = NULL;
}

int pool_init(struct pool *p, struct wk *w, const struct conf_pool *cp,
              struct pool_shared *sh)
{
    p->cp = cp;
    p->wk = w;
    p->shared = sh;
    p->listening = false;
    p->servers = sh->tab.servers;
    p->nslots = sh->tab.nslots;
    p->seen = 0;
    p->budget = (struct budget){ 0 };
    p->state = calloc(p->nslots, sizeof(*p->state));
    p->gen = calloc(p->nslots, sizeof(*p->gen));
    p->down = calloc(p->nslots, sizeof(*p->down));
    p->server_log = calloc(p->nslots, sizeof(*p->server_log));
    p->pool_log = (struct log_limit){ 0 };
    if (p->state == NULL || p->gen == NULL || p->down == NULL || p->server_log == NULL ||
        bal_init_servers(&p->bal, cp->balance, p->servers, p->nslots,
                         w->seed ^ (uint64_t)(uintptr_t)cp) == -1) {
        log_error(w->log, "pool '%s': out of memory", cp->name);
        pool_free_view(p);
        return -1;
    }
    p->nejected = 0;
    if (cp->outlier_failures != 0 &&
        (p->outlier = calloc(p->nslots, sizeof(*p->outlier))) == NULL) {
        log_error(w->log, "pool '%s': out of memory", cp->name);
        pool_free_view(p);
        return -1;
    }
    for (size_t i = 0; p->outlier != NULL && i < p->nslots; i++) {
        p->outlier[i] = (struct pool_outlier){ .p = p, .server = i };
        p->outlier[i].back = (struct ev_timer){ .fn = pool_outlier_back, .data = &p->outlier[i] };
    }
    for (size_t i = 0; i < p->nslots; i++) {
        p->state[i] = i < sh->tab.nstatic ? SERVER_ACTIVE : SERVER_FREE;
        bal_set_down(&p->bal, i, !pool_server_usable(p, i));
    }
    p->proto = NULL;
    p->stats = &w->stats.pools[cp - w->conf->pools];
    const struct pool_proto *pp = &pool_protos[cp->proto];
    if (pp->init != NULL && pp->init(p) == -1) {
        log_error(w->log, "pool '%s': cannot set up the %s pool", cp->name,
                  conf_proto_name(cp->proto));
        pool_free_view(p);
        return -1;
    }
    char label[sizeof(p->acc.label)];
    snprintf(label, sizeof(label), "pool '%s'", cp->name);
    acceptor_init(&p->acc, pool_listen_fd(p), label, w->log, pool_accepted, p);
    if (acceptor_start(&p->acc, w->loop) == -1) {
        log_error(w->log, "pool '%s': epoll: %s", cp->name, strerror(errno));
        if (pp->fini != NULL) {
            pp->fini(p);
        }
        pool_free_view(p);
        return -1;
    }
    p->listening = true;
    return 0;
}

void pool_stop_listening(struct pool *p)
{
    if (!p->listening) {
        return;
    }
    acceptor_stop(&p->acc, p->wk->loop);
    p->listening = false;
    struct pool_shared *sh = p->shared;
    if (!sh->is_unix) {
        close(sh->lfds[p->wk->id]); /* this worker's own socket */
        sh->lfds[p->wk->id] = -1;
    } else if (atomic_fetch_sub(&sh->unix_users, 1) == 1) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)&p->cp->listen.ss;
        if (!atomic_load(&sh->handed_over)) { /* a newer generation still uses it */
            unlink(un->sun_path);
        }
        close(sh->lfds[0]);
        sh->lfds[0] = -1;
    }
}

void pool_fini(struct pool *p)
{
    pool_stop_listening(p);
    const struct pool_proto *pp = &pool_protos[p->cp->proto];
    if (pp->fini != NULL) {
        pp->fini(p);
    }
    pool_free_view(p);
}

/* Balancers and the protocol follow a change of usability: the shared
 * table's (pool_sync) or this worker's own (an ejection or its end). */
static void pool_refresh(struct pool *p)
{
    for (size_t i = 0; i < p->nslots; i++) {
        bal_set_down(&p->bal, i, !pool_server_usable(p, i));
    }
    const struct pool_proto *pp = &pool_protos[p->cp->proto];
    if (pp->sync != NULL) {
        pp->sync(p);
    }
}

static void pool_outlier_back(struct ev_loop *loop, struct ev_timer *t)
{
    (void)loop;
    struct pool_outlier *o = t->data;
    struct pool *p = o->p;
    o->ejected = false;
    o->fails = 0;
    p->nejected--;
    log_notice(p->wk->log, "pool '%s': server %s back from ejection (worker %u)", p->cp->name,
               p->servers[o->server].spec, p->wk->id);
    pool_refresh(p);
}

/* How many servers of the pool may be ejected at once: the share, at least
 * one, never the last one in the table. */
static size_t pool_outlier_cap(const struct pool *p)
{
    size_t n = 0;
    for (size_t i = 0; i < p->nslots; i++) {
        n += p->state[i] == SERVER_ACTIVE;
    }
    size_t cap = n * p->cp->outlier_max_percent / 100;
    cap = cap == 0 && p->cp->outlier_max_percent > 0 ? 1 : cap;
    return n == 0 ? 0 : (cap < n ? cap : n - 1);
}

void pool_server_failed(struct pool *p, size_t i)
{
    if (p->outlier == NULL) {
        return;
    }
    struct pool_outlier *o = &p->outlier[i];
    const struct conf_pool *cp = p->cp;
    if (o->ejected || ++o->fails < cp->outlier_failures || p->nejected >= pool_outlier_cap(p)) {
        return;
    }
    uint64_t ms = cp->outlier_time;
    for (unsigned k = 0; k < o->ejections && ms < cp->outlier_max_time; k++) {
        ms *= 2;
    }
    ms = ms > cp->outlier_max_time ? cp->outlier_max_time : ms;
    o->ejected = true;
    o->ejections++;
    p->nejected++;
    stats_add(&p->stats->f[SP_SERVER_EJECTS], 1);
    log_warn(p->wk->log, "pool '%s': server %s ejected for %llu ms after %u failures in a row "
             "(worker %u)", cp->name, p->servers[i].spec, (unsigned long long)ms, o->fails,
             p->wk->id);
    ev_timer_start(p->wk->loop, &o->back, ms);
    pool_refresh(p);
}

void pool_server_ok(struct pool *p, size_t i)
{
    if (p->outlier != NULL) {
        p->outlier[i].fails = 0;
        p->outlier[i].ejections = 0;
    }
}

void pool_sync(struct pool *p)
{
    struct server_table *t = &p->shared->tab;
    unsigned long v = atomic_load_explicit(&t->version, memory_order_acquire);
    if (v == p->seen) {
        return;
    }
    p->seen = v;
    for (size_t i = 0; i < p->nslots; i++) {
        p->state[i] = (uint8_t)server_state_of(t, i);
        p->down[i] = atomic_load_explicit(&t->down[i], memory_order_relaxed);
        unsigned gen = atomic_load_explicit(&t->gen[i], memory_order_relaxed);
        if (gen != p->gen[i] && p->state[i] != SERVER_FREE) { /* filled anew */
            p->gen[i] = gen;
            bal_reset_server(&p->bal, i, p->servers[i].weight);
            if (p->outlier != NULL) {
                struct pool_outlier *o = &p->outlier[i];
                p->nejected -= o->ejected;
                ev_timer_stop(p->wk->loop, &o->back);
                o->ejected = false;
                o->fails = o->ejections = 0;
            }
        }
    }
    pool_refresh(p);
    atomic_store_explicit(&t->acked[p->wk->id], v, memory_order_release);
}

void pool_client_closed(struct pool *p, bool err)
{
    atomic_fetch_sub(&p->shared->clients, 1);
    stats_add(&p->wk->stats.curr_connections, -1);
    stats_add(&p->stats->f[SP_CLIENT_CONNECTIONS], -1);
    stats_add(&p->stats->f[err ? SP_CLIENT_ERR : SP_CLIENT_EOF], 1);
}

void pool_server_conn(struct pool *p, size_t server, int delta)
{
    stats_add(stats_server(p->stats, server, SS_SERVER_CONNECTIONS), delta);
    stats_add(&p->wk->stats.curr_connections, delta);
    if (delta > 0) {
        stats_add(&p->wk->stats.total_connections, delta);
    }
}

/* Write one rate-limited warning through `l` (see pool_server_warn). */
static void pool_vwarn(struct pool *p, struct log_limit *l, const char *fmt, va_list ap)
{
    uint64_t held;
    if (!log_on(p->wk->log, LOG_WARN) || !log_limit_pass(l, ev_now(p->wk->loop), &held)) {
        return;
    }
    char text[512];
    vsnprintf(text, sizeof(text), fmt, ap);
    if (held == 0) {
        log_warn(p->wk->log, "pool '%s': %s", p->cp->name, text);
    } else {
        log_warn(p->wk->log, "pool '%s': %s (and %llu more like it held back since the last "
                 "line)", p->cp->name, text, (unsigned long long)held);
    }
}

void pool_server_warn(struct pool *p, size_t i, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pool_vwarn(p, &p->server_log[i], fmt, ap);
    va_end(ap);
}

void pool_warn(struct pool *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pool_vwarn(p, &p->pool_log, fmt, ap);
    va_end(ap);
}
