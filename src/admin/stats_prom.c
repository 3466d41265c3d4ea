/* stats_prom: every worker's counters, summed, in Prometheus' text format
 * 0.0.4 (see stats.h).
 *
 * Names: legate_pool_*{pool}, legate_server_*{pool,server},
 * legate_arm_*{pool,arm} and legate_mirror_*{pool}; counters end in
 * _total, gauges do not. The field tables of stats.c drive the families,
 * so a counter added there appears here too.
 *
 * Latency histograms (legate_server_latency_seconds and the arm and
 * mirror ones) fold the fine buckets of stats.h into power-of-two bounds
 * from 64 us to 8.39 s. Those bounds are fine-bucket edges, so each count
 * is exact: an observation lies in `le` exactly when its fine bucket
 * does. _sum is the sum of the latencies measured (whole microseconds). */
#include "stats.h"
#include "stats_impl.h"
#include "../upstream/server.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* le = 2^(STATS_PROM_FIRST_EXP + k) us for k < STATS_PROM_BOUNDS, then +Inf. */
enum { STATS_PROM_FIRST_EXP = 6, STATS_PROM_BOUNDS = 18 };

/* What the renderers below read; the same for every family. */
struct stats_prom {
    struct stats_buf b;
    const struct conf *cf;
    const struct server_table *const *tabs;
    struct stats *const *ws;
    size_t nw;
};

/* A family's HELP and TYPE lines; nutcracker's "# ..." texts lose the "# ". */
static void prom_family(struct stats_prom *pr, const char *name, const char *type,
                        const char *help)
{
    if (strncmp(help, "# ", 2) == 0) {
        help += 2;
    }
    stats_put(&pr->b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: backslash, quote and newline escaped. */
static void prom_value(struct stats_prom *pr, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"') {
            stats_put(&pr->b, "\\%c", *s);
        } else if (*s == '\n') {
            stats_put(&pr->b, "\\n");
        } else {
            stats_put(&pr->b, "%c", *s);
        }
    }
}

/* `{pool="..."` and, when given, `,<key>="..."`; the caller closes it. */
static void prom_labels(struct stats_prom *pr, const char *pool, const char *key,
                        const char *val)
{
    stats_put(&pr->b, "{pool=\"");
    prom_value(pr, pool);
    stats_put(&pr->b, "\"");
    if (key != NULL) {
        stats_put(&pr->b, ",%s=\"", key);
        prom_value(pr, val);
        stats_put(&pr->b, "\"");
    }
}

/* A server's labels, after pool's: `server` (configured servers by ketama
 * identity, discovered ones by address, as the JSON) and, in http pools,
 * `arm` or `mirror="true"`: the same address may serve an arm and the
 * mirror, and each series must be unique. The caller closes the brace. */
static void prom_server_labels(struct stats_prom *pr, size_t p, size_t s)
{
    const struct server_table *tab = pr->tabs[p];
    const struct conf_pool *cp = &pr->cf->pools[p];
    prom_labels(pr, cp->name, "server", s < tab->nstatic ? tab->servers[s].ident
                                                         : tab->servers[s].spec);
    if (cp->proto != CONF_PROTO_HTTP) {
        return;
    }
    int owner = stats_slot_owner(cp, s);
    if (owner >= 0) {
        stats_put(&pr->b, ",arm=\"");
        prom_value(pr, cp->arms[owner].name);
        stats_put(&pr->b, "\"");
    } else if (owner == CONF_DISC_MIRROR) {
        stats_put(&pr->b, ",mirror=\"true\"");
    }
}

/* The per-worker counter arrays of a pool, by what they count. */
enum prom_table {
    PROM_POOL,          /* f[SP_N] */
    PROM_EXTRA,         /* x[SX_N] */
    PROM_SERVERS,       /* nservers rows of SS_N */
    PROM_LATENCY,       /* nservers rows of STATS_LAT_BUCKETS */
    PROM_LATENCY_US,    /* nservers sums */
    PROM_ARMS,          /* narms rows of SA_N */
    PROM_ARM_LATENCY,   /* narms rows of STATS_LAT_BUCKETS */
    PROM_ARM_LATENCY_US, /* narms sums */
    PROM_NTABLES,
};

/* Cell `i` of table `t` of pool p, summed over the workers. */
static int64_t prom_sum(const struct stats_prom *pr, size_t p, enum prom_table t, size_t i)
{
    int64_t v = 0;
    for (size_t w = 0; w < pr->nw; w++) {
        const struct stats_pool *sp = &pr->ws[w]->pools[p];
        const stats_ctr *const tables[PROM_NTABLES] = {
            sp->f, sp->x, sp->servers, sp->latency, sp->latency_us,
            sp->arms, sp->arm_latency, sp->arm_latency_us,
        };
        v += atomic_load_explicit(&tables[t][i], memory_order_relaxed);
    }
    return v;
}

/* A family's HELP and TYPE lines before its first sample, for families
 * only some pools have: `*done` says whether they were written. */
static void prom_family_once(struct stats_prom *pr, bool *done, const char *name,
                             const char *type, const char *help)
{
    if (!*done) {
        prom_family(pr, name, type, help);
        *done = true;
    }
}

/* Whether server slot s of pool p is shown (the JSON's rule). */
static bool prom_slot_shown(const struct stats_prom *pr, size_t p, size_t s)
{
    return server_state_of(pr->tabs[p], s) != SERVER_FREE;
}

static void prom_pools(struct stats_prom *pr)
{
    for (int f = 0; f < SP_N; f++) {
        const struct stats_field *sf = &stats_pool_fields[f];
        char name[96];
        snprintf(name, sizeof(name), "legate_pool_%s%s", sf->name, sf->gauge ? "" : "_total");
        prom_family(pr, name, sf->gauge ? "gauge" : "counter", sf->desc);
        for (size_t p = 0; p < pr->cf->npools; p++) {
            stats_put(&pr->b, "%s", name);
            prom_labels(pr, pr->cf->pools[p].name, NULL, NULL);
            stats_put(&pr->b, "} %" PRId64 "\n", prom_sum(pr, p, PROM_POOL, (size_t)f));
        }
    }
    for (int f = 0; f < SX_N; f++) {
        const struct stats_field *sf = &stats_extra_fields[f];
        bool family = false;
        for (size_t p = 0; p < pr->cf->npools; p++) {
            if (!stats_extra_shown(&pr->cf->pools[p], (enum stats_pool_extra)f)) {
                continue;
            }
            char name[96];
            snprintf(name, sizeof(name), "legate_pool_%s_total", sf->name);
            prom_family_once(pr, &family, name, "counter", sf->desc);
            stats_put(&pr->b, "%s", name);
            prom_labels(pr, pr->cf->pools[p].name, NULL, NULL);
            stats_put(&pr->b, "} %" PRId64 "\n", prom_sum(pr, p, PROM_EXTRA, (size_t)f));
        }
    }
}

/* Discovery counters, for the pools that discover. */
static void prom_discovery(struct stats_prom *pr)
{
    static const char *const what[2] = { "updates", "failures" };
    for (int i = 0; i < 2; i++) {
        bool family = false;
        for (size_t p = 0; p < pr->cf->npools; p++) {
            if (pr->cf->pools[p].ndisc == 0) {
                continue;
            }
            char name[96], help[64];
            snprintf(name, sizeof(name), "legate_pool_discovery_%s_total", what[i]);
            snprintf(help, sizeof(help), "discovery %s", what[i]);
            prom_family_once(pr, &family, name, "counter", help);
            stats_put(&pr->b, "%s", name);
            prom_labels(pr, pr->cf->pools[p].name, NULL, NULL);
            const struct server_table *tab = pr->tabs[p];
            stats_put(&pr->b, "} %" PRIu64 "\n", i == 0 ? tab->disc_updates : tab->disc_failures);
        }
    }
}

static void prom_servers(struct stats_prom *pr)
{
    for (int f = 0; f < SS_N; f++) {
        const struct stats_field *sf = &stats_server_fields[f];
        bool at = f == SS_SERVER_EJECTED_AT; /* usec timestamp, shown in seconds */
        /* server_eof -> legate_server_eof_total, requests -> legate_server_requests_total */
        const char *base = strncmp(sf->name, "server_", 7) == 0 ? sf->name + 7 : sf->name;
        char name[96];
        snprintf(name, sizeof(name), "legate_server_%s%s", base,
                 at ? "_seconds" : sf->gauge ? "" : "_total");
        prom_family(pr, name, sf->gauge ? "gauge" : "counter", sf->desc);
        for (size_t p = 0; p < pr->cf->npools; p++) {
            for (size_t s = 0; s < pr->tabs[p]->nslots; s++) {
                if (!prom_slot_shown(pr, p, s)) {
                    continue;
                }
                stats_put(&pr->b, "%s", name);
                prom_server_labels(pr, p, s);
                int64_t v = prom_sum(pr, p, PROM_SERVERS, s * SS_N + (size_t)f);
                if (at) {
                    stats_put(&pr->b, "} %" PRId64 ".%06" PRId64 "\n", v / 1000000, v % 1000000);
                } else {
                    stats_put(&pr->b, "} %" PRId64 "\n", v);
                }
            }
        }
    }
    bool family = false;
    for (size_t p = 0; p < pr->cf->npools; p++) {
        if (pr->cf->pools[p].health.kind == CONF_CHECK_NONE) {
            continue;
        }
        prom_family_once(pr, &family, "legate_server_up", "gauge",
                         "1 while health checks pass, 0 while they hold the server out");
        for (size_t s = 0; s < pr->tabs[p]->nslots; s++) {
            if (!prom_slot_shown(pr, p, s)) {
                continue;
            }
            stats_put(&pr->b, "legate_server_up");
            prom_server_labels(pr, p, s);
            bool down = atomic_load_explicit(&pr->tabs[p]->down[s], memory_order_relaxed);
            stats_put(&pr->b, "} %d\n", down ? 0 : 1);
        }
    }
}

/* The labels of histogram row `row` of pool p: a server's (arm false),
 * an arm's, or the mirror's (row == narms). The caller closes the brace. */
static void prom_row_labels(struct stats_prom *pr, size_t p, size_t row, bool arm)
{
    const struct conf_pool *cp = &pr->cf->pools[p];
    if (!arm) {
        prom_server_labels(pr, p, row);
    } else if (row < cp->narms) {
        prom_labels(pr, cp->name, "arm", cp->arms[row].name);
    } else {
        prom_labels(pr, cp->name, NULL, NULL);
    }
}

/* One histogram series: cumulative counts at the power-of-two bounds,
 * +Inf, _sum and _count. `arm` picks the arm histograms; `row` is the
 * server slot or arm index (narms: the mirror). */
static void prom_histogram(struct stats_prom *pr, const char *name, size_t p, size_t row,
                           bool arm)
{
    uint64_t le[STATS_PROM_BOUNDS] = { 0 };
    uint64_t total = 0;
    for (unsigned b = 0; b < STATS_LAT_BUCKETS; b++) {
        uint64_t n = (uint64_t)prom_sum(pr, p, arm ? PROM_ARM_LATENCY : PROM_LATENCY,
                                        row * STATS_LAT_BUCKETS + b);
        total += n;
        uint64_t edge = stats_lat_bound(b) + 1; /* its observations are < edge us */
        for (unsigned k = 0; k < STATS_PROM_BOUNDS; k++) {
            if (edge <= (1ull << (STATS_PROM_FIRST_EXP + k))) {
                le[k] += n;
            }
        }
    }
    int64_t sum_us = prom_sum(pr, p, arm ? PROM_ARM_LATENCY_US : PROM_LATENCY_US, row);
    for (unsigned k = 0; k < STATS_PROM_BOUNDS; k++) {
        uint64_t us = 1ull << (STATS_PROM_FIRST_EXP + k);
        stats_put(&pr->b, "%s_bucket", name);
        prom_row_labels(pr, p, row, arm);
        stats_put(&pr->b, ",le=\"%" PRIu64 ".%06" PRIu64 "\"} %" PRIu64 "\n", us / 1000000,
                  us % 1000000, le[k]);
    }
    stats_put(&pr->b, "%s_bucket", name);
    prom_row_labels(pr, p, row, arm);
    stats_put(&pr->b, ",le=\"+Inf\"} %" PRIu64 "\n%s_sum", total, name);
    prom_row_labels(pr, p, row, arm);
    stats_put(&pr->b, "} %" PRId64 ".%06" PRId64 "\n%s_count", sum_us / 1000000, sum_us % 1000000,
              name);
    prom_row_labels(pr, p, row, arm);
    stats_put(&pr->b, "} %" PRIu64 "\n", total);
}

static void prom_server_latency(struct stats_prom *pr)
{
    prom_family(pr, "legate_server_latency_seconds", "histogram",
                "time from sending a request to its reply");
    for (size_t p = 0; p < pr->cf->npools; p++) {
        for (size_t s = 0; s < pr->tabs[p]->nslots; s++) {
            if (prom_slot_shown(pr, p, s)) {
                prom_histogram(pr, "legate_server_latency_seconds", p, s, false);
            }
        }
    }
}

/* Whether pool p has rows for the arms' families (http pools) or the
 * mirror's (http pools with a mirror); *first and *end: its rows. */
static bool prom_arm_rows(const struct stats_prom *pr, size_t p, bool mirror, size_t *first,
                          size_t *end)
{
    const struct conf_pool *cp = &pr->cf->pools[p];
    *first = mirror ? cp->narms : 0;
    *end = mirror ? cp->narms + 1 : cp->narms;
    return cp->proto == CONF_PROTO_HTTP && (!mirror || cp->mirror_percent != 0);
}

/* The arms' families (mirror false) or the mirror's (true) of http pools.
 * Responses are one family with a `class` label; `dropped` only applies
 * to the mirror. */
static void prom_arms(struct stats_prom *pr, bool mirror)
{
    const char *prefix = mirror ? "legate_mirror" : "legate_arm";
    size_t first, end;
    for (int f = 0; f < SA_N; f++) {
        bool response = f >= SA_RESPONSES_1XX && f <= SA_RESPONSES_5XX;
        if ((f == SA_DROPPED && !mirror) || (response && f != SA_RESPONSES_1XX)) {
            continue; /* responses: all classes under the first */
        }
        char name[96];
        snprintf(name, sizeof(name), "%s_%s_total", prefix,
                 response ? "responses" : stats_arm_fields[f].name);
        bool family = false;
        for (size_t p = 0; p < pr->cf->npools; p++) {
            if (!prom_arm_rows(pr, p, mirror, &first, &end)) {
                continue;
            }
            prom_family_once(pr, &family, name, "counter",
                             response ? "responses by status class" : stats_arm_fields[f].desc);
            for (size_t a = first; a < end; a++) {
                for (int c = 0; c < (response ? 5 : 1); c++) {
                    stats_put(&pr->b, "%s", name);
                    prom_row_labels(pr, p, a, true);
                    if (response) {
                        stats_put(&pr->b, ",class=\"%dxx\"", c + 1);
                    }
                    stats_put(&pr->b, "} %" PRId64 "\n",
                              prom_sum(pr, p, PROM_ARMS, a * SA_N + (size_t)(f + c)));
                }
            }
        }
    }
    char name[96];
    snprintf(name, sizeof(name), "%s_latency_seconds", prefix);
    bool family = false;
    for (size_t p = 0; p < pr->cf->npools; p++) {
        if (!prom_arm_rows(pr, p, mirror, &first, &end)) {
            continue;
        }
        prom_family_once(pr, &family, name, "histogram",
                         mirror ? "time from a mirrored copy's start to its response"
                                : "time from a request's start to its response");
        for (size_t a = first; a < end; a++) {
            prom_histogram(pr, name, p, a, true);
        }
    }
}

long stats_prometheus(char **out, const struct conf *cf, const struct server_table *const *tabs,
                      struct stats *const *workers, size_t nworkers, int64_t started)
{
    struct stats_prom pr = { .b = { .cap = 16384 }, .cf = cf, .tabs = tabs, .ws = workers,
                             .nw = nworkers };
    pr.b.p = malloc(pr.b.cap);
    if (pr.b.p == NULL) {
        return -1;
    }
    pr.b.p[0] = '\0';
    int64_t total = 0, curr = 0;
    for (size_t w = 0; w < nworkers; w++) {
        total += atomic_load_explicit(&workers[w]->total_connections, memory_order_relaxed);
        curr += atomic_load_explicit(&workers[w]->curr_connections, memory_order_relaxed);
    }
    prom_family(&pr, "legate_uptime_seconds", "gauge", "seconds since legate started");
    stats_put(&pr.b, "legate_uptime_seconds %" PRId64 "\n", (int64_t)time(NULL) - started);
    prom_family(&pr, "legate_connections_total", "counter",
                "connections opened, clients' and servers' (nutcracker's total_connections)");
    stats_put(&pr.b, "legate_connections_total %" PRId64 "\n", total);
    prom_family(&pr, "legate_connections", "gauge",
                "connections open, clients' and servers' (nutcracker's curr_connections)");
    stats_put(&pr.b, "legate_connections %" PRId64 "\n", curr);
    prom_pools(&pr);
    prom_discovery(&pr);
    prom_servers(&pr);
    prom_server_latency(&pr);
    prom_arms(&pr, false);
    prom_arms(&pr, true);
    if (pr.b.failed) {
        free(pr.b.p);
        return -1;
    }
    *out = pr.b.p;
    return (long)pr.b.len;
}
