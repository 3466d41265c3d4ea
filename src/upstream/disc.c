/* disc: discovery sources and applying their results (see disc.h). */
#include "disc.h"
#include "disc_file.h"
#include "../core/fwatch.h"
#include "dns.h"
#include "ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    DISC_TTL_FLOOR_MS = 1000,  /* a short TTL never makes lookups more frequent */
    DISC_RECLAIM_MS = 1000,    /* how often draining slots are looked at */
    DISC_MAX_TARGETS = 256,    /* SRV targets resolved per round */
};

struct disc_pool;

/* One SRV target being resolved in the current round. */
struct disc_target {
    struct disc_pool *dp;
    unsigned weight;
};

struct disc_pool {
    struct disc *d;
    const struct conf_pool *cp;
    const struct conf_discovery *c; /* this group's: the pool's, an arm's or the mirror's */
    char label[160];              /* "pool 'p'", "pool 'p' arm 'a'", "pool 'p' mirror" */
    struct pool_shared *sh;
    struct dns *dns;
    struct ev_timer timer;        /* the next lookup or file check */
    /* the round in progress */
    bool busy;
    struct server_ep *eps;
    size_t neps;
    size_t cap;
    struct disc_target *targets;
    size_t pending;               /* target lookups not answered yet */
    uint32_t ttl;
    char err[512];                /* the round's first error, "" if none */
    /* file */
    struct stat seen;             /* the file as last read */
    bool have_file;
    struct server_ep *kept;       /* the last good set, while some of it had no slot */
    size_t nkept;
    bool failing;                 /* in a streak of failures (warned once) */
};

struct disc {
    struct ev_loop *loop;
    const struct log *log;
    disc_notify_fn notify;
    void *arg;
    struct disc_pool *pools;
    size_t npools;
    struct ev_timer reclaim;
};

static const char *disc_kind_name(enum conf_disc k)
{
    static const char *const names[] = { "none", "dns", "dns_srv", "file" };
    return names[k];
}

/* Ring points that changed owner between two rings (both sorted). */
static size_t disc_ring_moved(const struct ring *a, const struct ring *b)
{
    size_t i = 0, j = 0, moved = 0;
    while (i < a->npoints && j < b->npoints) {
        const struct ring_point *p = &a->points[i], *q = &b->points[j];
        if (p->value == q->value) {
            moved += p->server != q->server ? 2 : 0;
            i++;
            j++;
        } else if (p->value < q->value) {
            moved++;
            i++;
        } else {
            moved++;
            j++;
        }
    }
    return moved + (a->npoints - i) + (b->npoints - j);
}

/* The ring of the table's active slots (sharded ketama pools). */
static int disc_ring(struct ring *r, const struct disc_pool *dp)
{
    const struct server_table *t = &dp->sh->tab;
    bool *live = calloc(t->nslots, sizeof(*live));
    if (live == NULL) {
        return -1;
    }
    for (size_t i = 0; i < t->nslots; i++) {
        live[i] = server_state_of(t, i) == SERVER_ACTIVE;
    }
    int rc = ring_build_servers(r, dp->cp, t->servers, t->nslots, live);
    free(live);
    return rc;
}

static bool disc_sharded(const struct conf_pool *cp)
{
    return (cp->proto == CONF_PROTO_REDIS || cp->proto == CONF_PROTO_MEMCACHE) &&
           cp->distribution == CONF_DIST_KETAMA;
}

static void disc_reclaim(struct ev_loop *loop, struct ev_timer *t)
{
    struct disc *d = t->data;
    size_t left = 0;
    for (size_t i = 0; i < d->npools; i++) {
        left += server_table_reclaim(&d->pools[i].sh->tab);
    }
    if (left > 0) {
        ev_timer_start(loop, t, DISC_RECLAIM_MS);
    }
}

/* A good result: the pool's discovered servers are now eps[0, n). */
static void disc_apply(struct disc_pool *dp, const struct server_ep *eps, size_t n)
{
    struct disc *d = dp->d;
    struct server_table *t = &dp->sh->tab;
    struct ring before = { 0 }, after = { 0 };
    bool rings = disc_sharded(dp->cp) && disc_ring(&before, dp) == 0;
    struct server_change chg;
    server_table_apply(t, dp->c->first, dp->c->max_endpoints, eps, n, &chg);
    t->disc_updates++;
    if (dp->failing) {
        log_notice(d->log, "%s: discovery (%s %s) works again", dp->label,
                   disc_kind_name(dp->c->kind), dp->c->name);
        dp->failing = false;
    }
    if (chg.refused > 0 && eps != dp->kept) {
        log_warn(d->log, "%s: discovery found %zu servers more than max_endpoints "
                 "(%u) holds; they are left out until slots are free", dp->label,
                 chg.refused, dp->c->max_endpoints);
    }
    /* A file is applied again (slots free up as removed servers drain)
     * until all of it fits; lookups are applied every round anyway. */
    if (eps != dp->kept) {
        free(dp->kept);
        dp->kept = NULL;
        dp->nkept = 0;
        if (chg.refused > 0 && dp->c->kind == CONF_DISC_FILE &&
            (dp->kept = malloc(n * sizeof(*eps))) != NULL) {
            memcpy(dp->kept, eps, n * sizeof(*eps));
            dp->nkept = n;
        }
    } else if (chg.refused == 0) {
        free(dp->kept);
        dp->kept = NULL;
        dp->nkept = 0;
    }
    if (chg.added == 0 && chg.removed == 0) {
        if (rings) {
            ring_free(&before);
        }
        return;
    }
    char moved[96] = "";
    if (rings && disc_ring(&after, dp) == 0) {
        snprintf(moved, sizeof(moved), "; %zu of %zu ring points changed owner",
                 disc_ring_moved(&before, &after), after.npoints);
        ring_free(&after);
    }
    if (rings) {
        ring_free(&before);
    }
    log_notice(d->log, "%s: discovery (%s %s): %zu servers (+%zu -%zu)%s", dp->label,
               disc_kind_name(dp->c->kind), dp->c->name,
               chg.kept + chg.added, chg.added, chg.removed, moved);
    d->notify(d->arg);
    if (t->ndraining > 0) {
        ev_timer_start(d->loop, &d->reclaim, DISC_RECLAIM_MS);
    }
}

static void disc_failed(struct disc_pool *dp, const char *why)
{
    struct disc *d = dp->d;
    struct server_table *t = &dp->sh->tab;
    t->disc_failures++;
    size_t kept = 0;
    for (size_t i = dp->c->first; i < dp->c->first + dp->c->max_endpoints; i++) {
        kept += server_state_of(t, i) == SERVER_ACTIVE;
    }
    if (!dp->failing) {
        log_warn(d->log, "%s: discovery (%s %s) failed: %s; keeping the last %zu "
                 "discovered servers", dp->label, disc_kind_name(dp->c->kind),
                 dp->c->name, why, kept);
        dp->failing = true;
    } else {
        log_info(d->log, "%s: discovery (%s %s) failed again: %s", dp->label,
                 disc_kind_name(dp->c->kind), dp->c->name, why);
    }
}

static void disc_error(struct disc_pool *dp, const char *what, const char *why)
{
    if (dp->err[0] == '\0') {
        snprintf(dp->err, sizeof(dp->err), "%s%s%s", what, what[0] ? ": " : "", why);
    }
}

/* The round is over: apply or keep, then schedule the next one. */
static void disc_round_end(struct disc_pool *dp)
{
    /* No servers at all is a failure, whatever the source: a file its
     * writer truncated and has not written again reads as empty, and
     * applying that would take every server out. */
    if (dp->err[0] == '\0' && dp->neps == 0) {
        disc_error(dp, "", "no servers found");
    }
    if (dp->err[0] != '\0') {
        disc_failed(dp, dp->err);
    } else {
        disc_apply(dp, dp->eps, dp->neps);
    }
    uint64_t next = dp->c->interval;
    if (dp->err[0] == '\0' && dp->ttl != UINT32_MAX) {
        uint64_t ttl_ms = (uint64_t)dp->ttl * 1000;
        ttl_ms = ttl_ms < DISC_TTL_FLOOR_MS ? DISC_TTL_FLOOR_MS : ttl_ms;
        next = ttl_ms < next ? ttl_ms : next;
    }
    free(dp->eps);
    free(dp->targets);
    dp->eps = NULL;
    dp->targets = NULL;
    dp->neps = dp->cap = dp->pending = 0;
    dp->busy = false;
    ev_timer_start(dp->d->loop, &dp->timer, next);
}

static int disc_push(struct disc_pool *dp, const struct net_addr *a, unsigned weight)
{
    if (dp->neps == dp->cap) {
        size_t cap = dp->cap ? dp->cap * 2 : 16;
        struct server_ep *grown = realloc(dp->eps, cap * sizeof(*grown));
        if (grown == NULL) {
            return -1;
        }
        dp->eps = grown;
        dp->cap = cap;
    }
    struct server_ep *e = &dp->eps[dp->neps++];
    memset(e, 0, sizeof(*e));
    e->addr = *a;
    e->weight = weight;
    return 0;
}

static void disc_ttl(struct disc_pool *dp, uint32_t ttl)
{
    dp->ttl = ttl < dp->ttl ? ttl : dp->ttl;
}

/* dns: NAME:PORT answered. */
static void disc_host_done(void *arg, const char *err, const struct net_addr *addrs, size_t n,
                           uint32_t ttl)
{
    struct disc_pool *dp = arg;
    if (err != NULL) {
        disc_error(dp, "", err);
    }
    for (size_t i = 0; i < n; i++) {
        if (disc_push(dp, &addrs[i], 1) == -1) {
            disc_error(dp, "", "out of memory");
        }
    }
    disc_ttl(dp, ttl);
    disc_round_end(dp);
}

/* An SRV target answered. */
static void disc_target_done(void *arg, const char *err, const struct net_addr *addrs, size_t n,
                             uint32_t ttl)
{
    struct disc_target *tg = arg;
    struct disc_pool *dp = tg->dp;
    if (err != NULL) {
        disc_error(dp, "an SRV target", err);
    }
    for (size_t i = 0; i < n; i++) {
        if (disc_push(dp, &addrs[i], tg->weight) == -1) {
            disc_error(dp, "", "out of memory");
        }
    }
    disc_ttl(dp, ttl);
    if (--dp->pending == 0) {
        disc_round_end(dp);
    }
}

/* dns_srv: NAME answered: resolve the targets of the lowest priority. */
static void disc_srv_done(void *arg, const char *err, const struct dns_srv *recs, size_t n,
                          uint32_t ttl)
{
    struct disc_pool *dp = arg;
    if (err != NULL) {
        disc_error(dp, "", err);
        disc_round_end(dp);
        return;
    }
    disc_ttl(dp, ttl);
    uint16_t best = UINT16_MAX;
    for (size_t i = 0; i < n; i++) {
        best = recs[i].priority < best ? recs[i].priority : best;
    }
    size_t want = 0;
    for (size_t i = 0; i < n; i++) {
        want += recs[i].priority == best;
    }
    want = want > DISC_MAX_TARGETS ? DISC_MAX_TARGETS : want;
    dp->targets = calloc(want, sizeof(*dp->targets));
    if (dp->targets == NULL) {
        disc_error(dp, "", "out of memory");
        disc_round_end(dp);
        return;
    }
    /* Count them all before the first lookup: an answer may come at once. */
    dp->pending = want + 1;
    for (size_t i = 0, k = 0; i < n && k < want; i++) {
        if (recs[i].priority != best) {
            continue;
        }
        struct disc_target *tg = &dp->targets[k++];
        tg->dp = dp;
        /* SRV weight 0 means "rarely": the smallest weight we have. */
        tg->weight = recs[i].weight == 0 ? 1
                     : recs[i].weight > CONF_MAX_WEIGHT ? CONF_MAX_WEIGHT : recs[i].weight;
        dns_lookup_host(dp->dns, recs[i].target, recs[i].port, disc_target_done, tg);
    }
    if (--dp->pending == 0) {
        disc_round_end(dp);
    }
}

static bool disc_file_changed(const struct disc_pool *dp, const struct stat *st)
{
    return !dp->have_file || st->st_ino != dp->seen.st_ino || st->st_size != dp->seen.st_size ||
           st->st_mtim.tv_sec != dp->seen.st_mtim.tv_sec ||
           st->st_mtim.tv_nsec != dp->seen.st_mtim.tv_nsec;
}

/* file: PATH — re-read when it changed since the last good read. */
static void disc_check_file(struct disc_pool *dp)
{
    const char *path = dp->c->name;
    struct stat st;
    if (stat(path, &st) == -1) {
        char why[300];
        snprintf(why, sizeof(why), "%s: %s", path, strerror(errno));
        disc_error(dp, "", why);
        disc_round_end(dp);
        return;
    }
    if (!disc_file_changed(dp, &st) && !dp->failing) {
        if (dp->kept != NULL) {
            disc_apply(dp, dp->kept, dp->nkept);
        }
        ev_timer_start(dp->d->loop, &dp->timer, dp->c->interval);
        dp->busy = false;
        return;
    }
    char *text = NULL;
    size_t len = 0;
    char why[320];
    if (fwatch_read(path, DISC_FILE_MAX, &text, &len, &st) == -1) {
        snprintf(why, sizeof(why), "%s: %s", path, strerror(errno));
        disc_error(dp, "", why);
    } else {
        char perr[256];
        struct server_ep *eps = NULL;
        size_t n = 0;
        if (disc_file_parse(text, len, &eps, &n, perr, sizeof(perr)) == -1) {
            snprintf(why, sizeof(why), "%s: %s", path, perr);
            disc_error(dp, "", why);
        } else {
            dp->eps = eps;
            dp->neps = dp->cap = n;
            dp->seen = st;
            dp->have_file = true;
        }
    }
    free(text);
    disc_round_end(dp);
}

static void disc_lookup(struct ev_loop *loop, struct ev_timer *t)
{
    (void)loop;
    struct disc_pool *dp = t->data;
    if (dp->busy) {
        return;
    }
    dp->busy = true;
    dp->err[0] = '\0';
    dp->ttl = UINT32_MAX;
    const struct conf_discovery *c = dp->c;
    switch (c->kind) {
    case CONF_DISC_DNS:
        dns_lookup_host(dp->dns, c->name, c->port, disc_host_done, dp);
        break;
    case CONF_DISC_SRV:
        dns_lookup_srv(dp->dns, c->name, disc_srv_done, dp);
        break;
    default:
        disc_check_file(dp);
        break;
    }
}

static void disc_label(struct disc_pool *dp)
{
    const struct conf_pool *cp = dp->cp;
    int owner = dp->c->owner;
    if (owner >= 0 && cp->split) {
        snprintf(dp->label, sizeof(dp->label), "pool '%s' arm '%s'", cp->name,
                 cp->arms[owner].name);
    } else if (owner == CONF_DISC_MIRROR) {
        snprintf(dp->label, sizeof(dp->label), "pool '%s' mirror", cp->name);
    } else {
        snprintf(dp->label, sizeof(dp->label), "pool '%s'", cp->name);
    }
}

int disc_start(struct disc **out, struct ev_loop *loop, const struct conf *cf,
               struct pool_shared *shared, const struct log *log, disc_notify_fn notify,
               void *arg)
{
    *out = NULL;
    size_t n = 0;
    for (size_t i = 0; i < cf->npools; i++) {
        n += cf->pools[i].ndisc;
    }
    if (n == 0) {
        return 0;
    }
    struct disc *d = calloc(1, sizeof(*d));
    if (d == NULL || (d->pools = calloc(n, sizeof(*d->pools))) == NULL) {
        free(d);
        log_error(log, "discovery: out of memory");
        return -1;
    }
    d->loop = loop;
    d->log = log;
    d->notify = notify;
    d->arg = arg;
    d->reclaim = (struct ev_timer){ .fn = disc_reclaim, .data = d };
    for (size_t i = 0; i < cf->npools; i++) {
        const struct conf_pool *cp = &cf->pools[i];
        for (size_t g = 0; g < cp->ndisc; g++) {
            const struct conf_discovery *c = &cp->disc[g];
            struct disc_pool *dp = &d->pools[d->npools++];
            dp->d = d;
            dp->cp = cp;
            dp->c = c;
            dp->sh = &shared[i];
            dp->timer = (struct ev_timer){ .fn = disc_lookup, .data = dp };
            disc_label(dp);
            char err[256];
            if (c->kind != CONF_DISC_FILE &&
                dns_open(&dp->dns, loop, c->resolvers, err, sizeof(err)) == -1) {
                log_error(log, "%s: discovery: %s", dp->label, err);
                disc_stop(d);
                return -1;
            }
            log_notice(log, "%s: discovery from %s %s every %llu ms%s%s", dp->label,
                       disc_kind_name(c->kind), c->name, (unsigned long long)c->interval,
                       c->resolvers ? ", asking " : "", c->resolvers ? c->resolvers : "");
            ev_timer_start(loop, &dp->timer, 0);
        }
    }
    *out = d;
    return 0;
}

void disc_stop(struct disc *d)
{
    if (d == NULL) {
        return;
    }
    for (size_t i = 0; i < d->npools; i++) {
        struct disc_pool *dp = &d->pools[i];
        dns_close(dp->dns); /* running lookups: dropped without callbacks */
        ev_timer_stop(d->loop, &dp->timer);
        free(dp->eps);
        free(dp->targets);
        free(dp->kept);
    }
    ev_timer_stop(d->loop, &d->reclaim);
    free(d->pools);
    free(d);
}
