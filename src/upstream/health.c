/* health: active checks on main's loop (see health.h). */
#include "health.h"
#include "health_probe.h"
#include "../core/net.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { HEALTH_IN_MAX = 512 }; /* an answer longer than this without a verdict fails */

struct health_pool;

/* One server under check. */
struct health_target {
    struct health_pool *hp;
    size_t server;
    struct ev_io io;          /* fd -1 between checks */
    struct ev_timer timer;    /* the next check, then this check's timeout */
    bool checking;
    bool connected;
    unsigned gen;             /* the slot's fill these counts belong to */
    char *req;                /* what a check sends (NULL: nothing) */
    size_t reqlen;
    size_t sent;
    char in[HEALTH_IN_MAX];
    size_t nin;
    unsigned passes;          /* in a row */
    unsigned fails;           /* in a row */
    bool down;
    bool capped;              /* would be out, max_ejected_percent holds it (logged) */
    bool fresh;               /* the request is still to be built */
};

struct health_pool {
    struct health *h;
    const struct conf_pool *cp;
    struct pool_shared *sh;
    struct health_target *t;
    size_t ndown;
};

struct health {
    struct ev_loop *loop;
    const struct log *log;
    health_notify_fn notify;
    void *arg;
    struct health_pool *pools;
    size_t npools;
};

static const struct conf_server *health_server(const struct health_target *t)
{
    return &t->hp->sh->tab.servers[t->server];
}

static const char *health_spec(const struct health_target *t)
{
    return health_server(t)->spec;
}

static void health_publish(struct health_target *t)
{
    struct health_pool *hp = t->hp;
    atomic_store_explicit(&hp->sh->tab.down[t->server], t->down, memory_order_relaxed);
    server_table_publish(&hp->sh->tab);
    hp->h->notify(hp->h->arg);
}

/* How many of the pool's servers may be out at once. */
static size_t health_cap(const struct health_pool *hp)
{
    const struct server_table *tab = &hp->sh->tab;
    size_t n = 0;
    for (size_t i = 0; i < tab->nslots; i++) {
        n += server_state_of(tab, i) != SERVER_FREE;
    }
    unsigned pct = hp->cp->health.max_ejected_percent;
    size_t cap = n * pct / 100;
    return cap == 0 && pct > 0 ? 1 : cap;
}

/* The slot was emptied or filled anew since the last check: forget what
 * was counted (a new endpoint starts in, as the table fills it). Returns
 * false when the slot is empty. */
static bool health_follow_slot(struct health_target *t)
{
    const struct server_table *tab = &t->hp->sh->tab;
    bool empty = server_state_of(tab, t->server) == SERVER_FREE;
    unsigned gen = atomic_load_explicit(&tab->gen[t->server], memory_order_relaxed);
    if (empty || gen != t->gen) {
        if (t->down) {
            t->hp->ndown--;
        }
        t->down = t->capped = false;
        t->passes = t->fails = 0;
        free(t->req);
        t->req = NULL;
        t->reqlen = 0;
        t->gen = empty ? t->gen : gen;
        t->fresh = true;
    }
    if (empty) {
        return false;
    }
    if (t->fresh) {
        if (health_probe_request(t->hp->cp, health_server(t), &t->req, &t->reqlen) == -1) {
            return false; /* out of memory: try at the next interval */
        }
        t->fresh = false;
    }
    return true;
}

/* Count the verdict of one check and move the server in or out. */
static void health_verdict(struct health_target *t, bool pass, const char *why)
{
    struct health_pool *hp = t->hp;
    const struct conf_health *cfg = &hp->cp->health;
    const struct log *lg = hp->h->log;
    if (pass) {
        t->fails = 0;
        t->capped = false;
        t->passes++;
        if (t->down && t->passes >= cfg->rise) {
            t->down = false;
            hp->ndown--;
            log_notice(lg, "pool '%s': server %s is up: %u health checks passed",
                       hp->cp->name, health_spec(t), t->passes);
            health_publish(t);
        }
        return;
    }
    t->passes = 0;
    t->fails++;
    if (t->down || t->fails < cfg->fall) {
        return;
    }
    if (hp->ndown >= health_cap(hp)) {
        if (!t->capped) {
            log_warn(lg, "pool '%s': server %s failed %u health checks (%s) but stays in: "
                     "max_ejected_percent %u%% of the pool is already out", hp->cp->name,
                     health_spec(t), t->fails, why, cfg->max_ejected_percent);
            t->capped = true;
        }
        return;
    }
    t->down = true;
    hp->ndown++;
    log_warn(lg, "pool '%s': server %s is down: %u health checks failed in a row (%s)",
             hp->cp->name, health_spec(t), t->fails, why);
    health_publish(t);
}

static void health_close(struct health_target *t)
{
    if (t->io.fd != -1) {
        int fd = t->io.fd;
        ev_io_del(t->hp->h->loop, &t->io);
        close(fd);
    }
    t->checking = false;
}

/* The check ended: record it and schedule the next one. */
static void health_done(struct health_target *t, bool pass, const char *why)
{
    health_close(t);
    health_verdict(t, pass, why);
    ev_timer_start(t->hp->h->loop, &t->timer, t->hp->cp->health.interval);
}

/* Send what is left of the request; then read and judge. */
static void health_progress(struct health_target *t)
{
    const struct conf_pool *cp = t->hp->cp;
    while (t->sent < t->reqlen) {
        ssize_t n = write(t->io.fd, t->req + t->sent, t->reqlen - t->sent);
        if (n > 0) {
            t->sent += (size_t)n;
        } else if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
            return;
        } else {
            health_done(t, false, "write failed");
            return;
        }
    }
    if (t->req == NULL) {
        health_done(t, true, NULL); /* tcp: connected is healthy */
        return;
    }
    for (;;) {
        if (t->nin == sizeof(t->in)) {
            health_done(t, false, "answer too long");
            return;
        }
        ssize_t n = read(t->io.fd, t->in + t->nin, sizeof(t->in) - t->nin);
        if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        if (n == -1) {
            health_done(t, false, strerror(errno));
            return;
        }
        t->nin += (size_t)n;
        const char *why = NULL;
        enum health_verdict v = health_probe_judge(cp, t->in, t->nin, n == 0, &why);
        if (v != HEALTH_MORE) {
            health_done(t, v == HEALTH_PASS, why);
            return;
        }
    }
}

static void health_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    struct health_target *t = io->data;
    if (!t->connected) {
        if ((events & (EV_WRITE | EV_HUP)) == 0) {
            return;
        }
        int err = net_connect_result(io->fd);
        if (err != 0) {
            health_done(t, false, strerror(err));
            return;
        }
        t->connected = true;
    }
    health_progress(t);
}

static void health_begin(struct health_target *t)
{
    struct health *h = t->hp->h;
    if (!health_follow_slot(t)) {
        ev_timer_start(h->loop, &t->timer, t->hp->cp->health.interval);
        return;
    }
    bool done = false;
    int fd = net_connect(&health_server(t)->addr, &done);
    if (fd == -1) {
        health_verdict(t, false, strerror(errno));
        ev_timer_start(h->loop, &t->timer, t->hp->cp->health.interval);
        return;
    }
    t->checking = true;
    t->connected = done;
    t->sent = 0;
    t->nin = 0;
    t->io = (struct ev_io){ .fd = fd, .fn = health_io, .data = t };
    if (ev_io_add(h->loop, &t->io, EV_READ | EV_WRITE) == -1) {
        t->io.fd = -1;
        close(fd);
        health_done(t, false, strerror(errno));
        return;
    }
    ev_timer_start(h->loop, &t->timer, t->hp->cp->health.timeout);
    if (done) {
        health_progress(t);
    }
}

/* The timer: start a check, or time out the one in flight. */
static void health_timer(struct ev_loop *loop, struct ev_timer *timer)
{
    (void)loop;
    struct health_target *t = timer->data;
    if (t->checking) {
        health_done(t, false, t->connected ? "timed out waiting for the answer"
                                           : "timed out connecting");
        return;
    }
    health_begin(t);
}

static int health_pool_init(struct health *h, struct health_pool *hp, const struct conf_pool *cp,
                            struct pool_shared *sh)
{
    size_t n = sh->tab.nslots;
    hp->h = h;
    hp->cp = cp;
    hp->sh = sh;
    hp->t = calloc(n, sizeof(*hp->t));
    if (hp->t == NULL) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct health_target *t = &hp->t[i];
        t->hp = hp;
        t->server = i;
        t->io.fd = -1;
        t->fresh = true;
        t->timer = (struct ev_timer){ .fn = health_timer, .data = t };
        /* First checks spread over the first interval. */
        ev_timer_start(h->loop, &t->timer, 1 + cp->health.interval * i / n);
    }
    return 0;
}
int health_start(struct health **out, struct ev_loop *loop, const struct conf *cf,
                 struct pool_shared *shared, const struct log *log, health_notify_fn notify,
                 void *arg)
{
    *out = NULL;
    size_t n = 0;
    for (size_t i = 0; i < cf->npools; i++) {
        n += cf->pools[i].health.kind != CONF_CHECK_NONE;
    }
    if (n == 0) {
        return 0;
    }
    struct health *h = calloc(1, sizeof(*h));
    if (h == NULL || (h->pools = calloc(n, sizeof(*h->pools))) == NULL) {
        free(h);
        log_error(log, "health checks: out of memory");
        return -1;
    }
    h->loop = loop;
    h->log = log;
    h->notify = notify;
    h->arg = arg;
    for (size_t i = 0; i < cf->npools; i++) {
        const struct conf_pool *cp = &cf->pools[i];
        if (cp->health.kind == CONF_CHECK_NONE) {
            continue;
        }
        if (health_pool_init(h, &h->pools[h->npools++], cp, &shared[i]) == -1) {
            log_error(log, "health checks: out of memory");
            health_stop(h);
            return -1;
        }
        log_notice(log, "pool '%s': %s health checks every %llu ms (timeout %llu ms, "
                   "rise %u, fall %u)", cp->name, conf_check_name(cp->health.kind),
                   (unsigned long long)cp->health.interval,
                   (unsigned long long)cp->health.timeout, cp->health.rise, cp->health.fall);
    }
    *out = h;
    return 0;
}

void health_stop(struct health *h)
{
    if (h == NULL) {
        return;
    }
    for (size_t p = 0; p < h->npools; p++) {
        struct health_pool *hp = &h->pools[p];
        for (size_t i = 0; hp->t != NULL && i < hp->sh->tab.nslots; i++) {
            health_close(&hp->t[i]);
            ev_timer_stop(h->loop, &hp->t[i].timer);
            free(hp->t[i].req);
        }
        free(hp->t);
    }
    free(h->pools);
    free(h);
}
