/* stats: per-worker counters and nutcracker's JSON (see stats.h). */
#include "stats.h"
#include "stats_impl.h"
#include "../upstream/server.h"
#include "../version.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const struct stats_field stats_extra_fields[SX_N] = {
    [SX_RETRIES] = { "retries", "# retries sent to another server (tcp, http)", false },
    [SX_RETRIES_DENIED] = { "retries_denied", "# retries refused by the retry budget", false },
    [SX_REJECTED] = { "rejected", "# refused at once by max_connections or max_pending", false },
};

bool stats_extra_shown(const struct conf_pool *cp, enum stats_pool_extra f)
{
    if (cp->proto == CONF_PROTO_TCP || cp->proto == CONF_PROTO_HTTP) {
        return true;
    }
    return f == SX_REJECTED && (cp->max_pending != 0 || cp->max_connections != 0);
}

const struct stats_field stats_pool_fields[SP_N] = {
    [SP_CLIENT_EOF] = { "client_eof", "# eof on client connections", false },
    [SP_CLIENT_ERR] = { "client_err", "# errors on client connections", false },
    [SP_CLIENT_CONNECTIONS] = { "client_connections", "# active client connections", true },
    [SP_SERVER_EJECTS] = { "server_ejects", "# times backend server was ejected", false },
    [SP_FORWARD_ERROR] = { "forward_error", "# times we encountered a forwarding error", false },
    [SP_FRAGMENTS] = { "fragments", "# fragments created from a multi-vector request", false },
};

const struct stats_field stats_server_fields[SS_N] = {
    [SS_SERVER_EOF] = { "server_eof", "# eof on server connections", false },
    [SS_SERVER_ERR] = { "server_err", "# errors on server connections", false },
    [SS_SERVER_TIMEDOUT] = { "server_timedout", "# timeouts on server connections", false },
    [SS_SERVER_CONNECTIONS] = { "server_connections", "# active server connections", true },
    [SS_SERVER_EJECTED_AT] = { "server_ejected_at",
                               "timestamp when server was ejected in usec since epoch", true },
    [SS_REQUESTS] = { "requests", "# requests", false },
    [SS_REQUEST_BYTES] = { "request_bytes", "total request bytes", false },
    [SS_RESPONSES] = { "responses", "# responses", false },
    [SS_RESPONSE_BYTES] = { "response_bytes", "total response bytes", false },
    [SS_IN_QUEUE] = { "in_queue", "# requests in incoming queue", true },
    [SS_IN_QUEUE_BYTES] = { "in_queue_bytes", "current request bytes in incoming queue", true },
    [SS_OUT_QUEUE] = { "out_queue", "# requests in outgoing queue", true },
    [SS_OUT_QUEUE_BYTES] = { "out_queue_bytes", "current request bytes in outgoing queue", true },
};

const struct stats_field stats_arm_fields[SA_N] = {
    [SA_REQUESTS] = { "requests", "# requests sent to the arm (or mirrored)", false },
    [SA_RESPONSES_1XX] = { "responses_1xx", "# 1xx responses", false },
    [SA_RESPONSES_2XX] = { "responses_2xx", "# 2xx responses", false },
    [SA_RESPONSES_3XX] = { "responses_3xx", "# 3xx responses", false },
    [SA_RESPONSES_4XX] = { "responses_4xx", "# 4xx responses", false },
    [SA_RESPONSES_5XX] = { "responses_5xx", "# 5xx responses", false },
    [SA_UPSTREAM_ERRORS] = { "upstream_errors", "# upstream connect or framing errors", false },
    [SA_TIMEOUTS] = { "timeouts", "# upstream timeouts", false },
    [SA_DROPPED] = { "dropped", "# mirror copies dropped (queue full)", false },
};

int stats_init(struct stats *s, const struct conf *cf)
{
    memset(s, 0, sizeof(*s));
    s->pools = calloc(cf->npools, sizeof(*s->pools));
    if (s->pools == NULL) {
        return -1;
    }
    s->npools = cf->npools;
    for (size_t i = 0; i < cf->npools; i++) {
        size_t nslots = server_slots(&cf->pools[i]);
        s->pools[i].nservers = nslots;
        s->pools[i].servers = calloc(nslots * SS_N, sizeof(stats_ctr));
        s->pools[i].latency = calloc(nslots * STATS_LAT_BUCKETS, sizeof(stats_ctr));
        s->pools[i].latency_us = calloc(nslots, sizeof(stats_ctr));
        if (s->pools[i].servers == NULL || s->pools[i].latency == NULL ||
            s->pools[i].latency_us == NULL) {
            stats_free(s);
            return -1;
        }
        if (cf->pools[i].proto == CONF_PROTO_HTTP) {
            size_t n = cf->pools[i].narms + 1;
            s->pools[i].narms = n;
            s->pools[i].arms = calloc(n * SA_N, sizeof(stats_ctr));
            s->pools[i].arm_latency = calloc(n * STATS_LAT_BUCKETS, sizeof(stats_ctr));
            s->pools[i].arm_latency_us = calloc(n, sizeof(stats_ctr));
            if (s->pools[i].arms == NULL || s->pools[i].arm_latency == NULL ||
                s->pools[i].arm_latency_us == NULL) {
                stats_free(s);
                return -1;
            }
        }
    }
    return 0;
}

void stats_free(struct stats *s)
{
    for (size_t i = 0; s->pools != NULL && i < s->npools; i++) {
        free(s->pools[i].servers);
        free(s->pools[i].latency);
        free(s->pools[i].latency_us);
        free(s->pools[i].arms);
        free(s->pools[i].arm_latency);
        free(s->pools[i].arm_latency_us);
    }
    free(s->pools);
    s->pools = NULL;
    s->npools = 0;
}

void stats_put(struct stats_buf *b, const char *fmt, ...)
{
    for (int attempt = 0; attempt < 2 && !b->failed; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* `s` inside a JSON string: the characters names may hold, escaped. */
static void stats_put_escaped(struct stats_buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            stats_put(b, "\\%c", c);
        } else if (c < 0x20) {
            stats_put(b, "\\u%04x", c);
        } else {
            stats_put(b, "%c", c);
        }
    }
}

/* A JSON string. */
static void stats_put_name(struct stats_buf *b, const char *s)
{
    stats_put(b, "\"");
    stats_put_escaped(b, s);
    stats_put(b, "\"");
}

int stats_slot_owner(const struct conf_pool *cp, size_t s)
{
    for (size_t a = 0; a < cp->narms; a++) {
        if (s >= cp->arms[a].first && s < cp->arms[a].first + cp->arms[a].n) {
            return (int)a;
        }
    }
    if (s >= cp->mirror_first && s < cp->mirror_first + cp->mirror_n) {
        return CONF_DISC_MIRROR;
    }
    for (size_t i = 0; i < cp->ndisc; i++) {
        const struct conf_discovery *d = &cp->disc[i];
        if (s >= d->first && s < d->first + d->max_endpoints) {
            return d->owner;
        }
    }
    return CONF_DISC_POOL;
}

/* A server row's key: configured servers by their ketama identity, as
 * nutcracker; discovered ones by address. In an http split or a pool with
 * a mirror the owner comes first ("production/10.0.0.1:80",
 * "mirror/10.0.0.2:80"): one address may serve an arm and the mirror, and
 * a key must not repeat. */
static void stats_put_server_key(struct stats_buf *b, const struct conf_pool *cp,
                                 const struct server_table *tab, size_t s)
{
    const char *name = s < tab->nstatic ? tab->servers[s].ident : tab->servers[s].spec;
    int owner = cp->proto == CONF_PROTO_HTTP && (cp->split || cp->mirror_percent > 0)
                    ? stats_slot_owner(cp, s) : CONF_DISC_POOL;
    if (owner == CONF_DISC_POOL) {
        stats_put_name(b, name);
        return;
    }
    stats_put(b, "\"");
    stats_put_escaped(b, owner >= 0 ? cp->arms[owner].name : "mirror");
    stats_put(b, "/");
    stats_put_escaped(b, name);
    stats_put(b, "\"");
}

int64_t stats_sum(stats_ctr *const *cells, size_t n)
{
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v += atomic_load_explicit(cells[i], memory_order_relaxed);
    }
    return v;
}

uint64_t stats_lat_bound(unsigned bucket)
{
    if (bucket < 16) {
        return bucket;
    }
    unsigned exp = 4 + (bucket - 16) / 8;
    unsigned sub = (bucket - 16) % 8;
    return ((uint64_t)(8 + sub + 1) << (exp - 3)) - 1;
}

/* Latency percentiles of one histogram row over all workers, in
 * microseconds (0 when nothing was measured): p50, p90, p99. `arm`
 * selects the per-arm histograms instead of the per-server ones. */
static void stats_percentiles(struct stats *const *workers, size_t nworkers, size_t pool,
                              size_t row, bool arm, uint64_t out[3])
{
    static const double want[3] = { 0.50, 0.90, 0.99 };
    uint64_t counts[STATS_LAT_BUCKETS];
    uint64_t total = 0;
    for (unsigned b = 0; b < STATS_LAT_BUCKETS; b++) {
        counts[b] = 0;
        for (size_t w = 0; w < nworkers; w++) {
            const struct stats_pool *sp = &workers[w]->pools[pool];
            const stats_ctr *r = (arm ? sp->arm_latency : sp->latency) + row * STATS_LAT_BUCKETS;
            counts[b] += (uint64_t)atomic_load_explicit(&r[b], memory_order_relaxed);
        }
        total += counts[b];
    }
    for (int i = 0; i < 3; i++) {
        out[i] = 0;
        if (total == 0) {
            continue;
        }
        uint64_t rank = (uint64_t)(want[i] * (double)total + 0.999999);
        uint64_t seen = 0;
        for (unsigned b = 0; b < STATS_LAT_BUCKETS; b++) {
            seen += counts[b];
            if (seen >= rank) {
                out[i] = stats_lat_bound(b);
                break;
            }
        }
    }
}

/* One arm's (or the mirror's) counters and latency percentiles. */
static void stats_json_arm(struct stats_buf *b, struct stats *const *workers, size_t nworkers,
                           size_t pool, size_t arm, stats_ctr **cells)
{
    stats_put(b, "{");
    for (int f = 0; f < SA_N; f++) {
        for (size_t w = 0; w < nworkers; w++) {
            cells[w] = stats_arm(&workers[w]->pools[pool], arm, (enum stats_arm_field)f);
        }
        stats_put(b, "%s\"%s\":%" PRId64, f ? ", " : "", stats_arm_fields[f].name,
                  stats_sum(cells, nworkers));
    }
    uint64_t pct[3];
    stats_percentiles(workers, nworkers, pool, arm, true, pct);
    stats_put(b, ", \"latency_p50_us\":%" PRIu64 ", \"latency_p90_us\":%" PRIu64
              ", \"latency_p99_us\":%" PRIu64 "}", pct[0], pct[1], pct[2]);
}

/* http pools: "arms": { name: {...} }, "mirror": {...} side by side. */
static void stats_json_arms(struct stats_buf *b, const struct conf_pool *cp,
                            struct stats *const *workers, size_t nworkers, size_t pool,
                            stats_ctr **cells)
{
    stats_put(b, ", \"arms\": {");
    for (size_t a = 0; a < cp->narms; a++) {
        stats_put(b, "%s", a ? ", " : "");
        stats_put_name(b, cp->arms[a].name);
        stats_put(b, ": ");
        stats_json_arm(b, workers, nworkers, pool, a, cells);
    }
    stats_put(b, "}, \"mirror\": ");
    stats_json_arm(b, workers, nworkers, pool, cp->narms, cells);
}

long stats_json(char **out, const struct conf *cf, const struct server_table *const *tabs,
                struct stats *const *workers, size_t nworkers, int64_t started,
                const char *source)
{
    struct stats_buf b = { .cap = 4096 };
    stats_ctr **cells = calloc(nworkers ? nworkers : 1, sizeof(*cells));
    b.p = malloc(b.cap);
    if (b.p == NULL || cells == NULL) {
        free(b.p);
        free(cells);
        return -1;
    }
    b.p[0] = '\0';
    int64_t now = (int64_t)time(NULL);
    stats_put(&b, "{\"service\":\"legate\", \"source\":");
    stats_put_name(&b, source);
    stats_put(&b, ", \"version\":\"%s\", \"uptime\":%" PRId64 ", \"timestamp\":%" PRId64,
              LEGATE_VERSION, now - started, now);
    for (size_t w = 0; w < nworkers; w++) {
        cells[w] = &workers[w]->total_connections;
    }
    stats_put(&b, ", \"total_connections\":%" PRId64, stats_sum(cells, nworkers));
    for (size_t w = 0; w < nworkers; w++) {
        cells[w] = &workers[w]->curr_connections;
    }
    stats_put(&b, ", \"curr_connections\":%" PRId64, stats_sum(cells, nworkers));
    for (size_t p = 0; p < cf->npools; p++) {
        const struct conf_pool *cp = &cf->pools[p];
        stats_put(&b, ", ");
        stats_put_name(&b, cp->name);
        stats_put(&b, ": {");
        for (int f = 0; f < SP_N; f++) {
            for (size_t w = 0; w < nworkers; w++) {
                cells[w] = &workers[w]->pools[p].f[f];
            }
            stats_put(&b, "%s\"%s\":%" PRId64, f ? ", " : "", stats_pool_fields[f].name,
                      stats_sum(cells, nworkers));
        }
        for (int f = 0; f < SX_N; f++) {
            if (!stats_extra_shown(cp, (enum stats_pool_extra)f)) {
                continue;
            }
            for (size_t w = 0; w < nworkers; w++) {
                cells[w] = &workers[w]->pools[p].x[f];
            }
            stats_put(&b, ", \"%s\":%" PRId64, stats_extra_fields[f].name,
                      stats_sum(cells, nworkers));
        }
        const struct server_table *tab = tabs[p];
        for (size_t s = 0; s < tab->nslots; s++) {
            if (server_state_of(tab, s) == SERVER_FREE) {
                continue;
            }
            stats_put(&b, ", ");
            stats_put_server_key(&b, cp, tab, s);
            stats_put(&b, ": {");
            for (int f = 0; f < SS_N; f++) {
                for (size_t w = 0; w < nworkers; w++) {
                    cells[w] = stats_server(&workers[w]->pools[p], s,
                                            (enum stats_server_field)f);
                }
                stats_put(&b, "%s\"%s\":%" PRId64, f ? ", " : "", stats_server_fields[f].name,
                          stats_sum(cells, nworkers));
            }
            uint64_t pct[3];
            stats_percentiles(workers, nworkers, p, s, false, pct);
            stats_put(&b, ", \"latency_p50_us\":%" PRIu64 ", \"latency_p90_us\":%" PRIu64
                      ", \"latency_p99_us\":%" PRIu64, pct[0], pct[1], pct[2]);
            /* Only where they can change, so nutcracker's pools keep its fields. */
            if (cp->health.kind != CONF_CHECK_NONE) {
                stats_put(&b, ", \"health\":\"%s\"",
                          atomic_load_explicit(&tab->down[s], memory_order_relaxed) ? "down"
                                                                                    : "up");
            }
            if (s >= tab->nstatic) {
                stats_put(&b, ", \"draining\":%s",
                          server_state_of(tab, s) == SERVER_DRAINING ? "true" : "false");
            }
            stats_put(&b, "}");
        }
        if (cp->ndisc > 0) {
            stats_put(&b, ", \"discovery_updates\":%" PRIu64 ", \"discovery_failures\":%" PRIu64,
                      tab->disc_updates, tab->disc_failures);
        }
        if (cp->proto == CONF_PROTO_HTTP) {
            stats_json_arms(&b, cp, workers, nworkers, p, cells);
        }
        stats_put(&b, "}");
    }
    stats_put(&b, "}\n");
    free(cells);
    if (b.failed) {
        free(b.p);
        return -1;
    }
    *out = b.p;
    return (long)b.len;
}

void stats_describe(FILE *f)
{
    fprintf(f, "pool stats:\n");
    for (int i = 0; i < SP_N; i++) {
        fprintf(f, "  %-20s\"%s\"\n", stats_pool_fields[i].name, stats_pool_fields[i].desc);
    }
    fprintf(f, "\nserver stats:\n");
    for (int i = 0; i < SS_N; i++) {
        fprintf(f, "  %-20s\"%s\"\n", stats_server_fields[i].name, stats_server_fields[i].desc);
    }
    fprintf(f, "  %-20s\"%s\"\n", "latency_p50_us",
            "median reply time since start, usec (legate's; upper bucket bound)");
    fprintf(f, "  %-20s\"%s\"\n", "latency_p90_us", "90th percentile reply time, usec");
    fprintf(f, "  %-20s\"%s\"\n", "latency_p99_us", "99th percentile reply time, usec");
}
