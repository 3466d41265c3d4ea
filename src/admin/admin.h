/* admin: the admin HTTP listener (`legate.admin`), on main's loop.
 *
 *   GET /stats    nutcracker's JSON (the stats listener's, as HTTP)
 *   GET /metrics  the same counters in Prometheus' text format
 *   GET /healthz  200 "ok" while main's loop runs (liveness)
 *   GET /ready    200 "ready" when every pool has a server to send to (a
 *                 slot in use that health checks do not hold out); 503
 *                 naming the pools without one otherwise (readiness)
 *
 * HEAD works on each. One request per connection, answered with
 * `Connection: close`, as a scraper or a probe expects. Requests are
 * parsed by http_head (llhttp, strict) with ADMIN_HEAD_MAX bytes of head
 * and ADMIN_LINE_MAX of request target (431 and 414 beyond); a malformed
 * request gets 400, a method other than GET or HEAD 405, an unknown path
 * 404. A client has ADMIN_TIMEOUT_MS for the whole exchange; at most
 * ADMIN_MAX_CONNS are served at once and more are closed on accept. */
#ifndef LEGATE_ADMIN_H
#define LEGATE_ADMIN_H

#include "stats.h"
#include "../core/ev.h"
#include "../core/log.h"
#include "../core/net.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    ADMIN_HEAD_MAX = 8192,
    ADMIN_LINE_MAX = 2048,
    ADMIN_TIMEOUT_MS = 5000,
    ADMIN_MAX_CONNS = 32,
};

enum admin_page { ADMIN_STATS, ADMIN_METRICS, ADMIN_HEALTHZ, ADMIN_READY, ADMIN_NPAGES };

/* What a request asks for, once its head is complete. */
struct admin_req {
    int status;            /* 200, or the error to answer */
    enum admin_page page;  /* when status is 200 */
    bool head;             /* HEAD: headers only */
    const char *why;       /* the error's text */
};

/* Parse one request from buf[0, n) (fed in two parts, split at `cut`, to
 * exercise the incremental path). Returns 0 with *r filled when the head
 * is complete or an error was found, or -2 if more bytes are needed. For
 * tests and fuzzing; the listener runs the same code incrementally. */
int admin_parse(const char *buf, size_t n, size_t cut, struct admin_req *r);

/* What the pages are made of, lent by main for one request. */
struct admin_view {
    const struct conf *cf;
    const struct server_table **tabs;   /* cf->npools, malloc'd; admin frees it */
    struct stats *ws[CONF_MAX_WORKERS];
    size_t nworkers;
    int64_t started;                    /* wall clock, seconds */
    const char *source;                 /* host name */
};

/* Fill `v` for the running configuration. Returns 0, or -1 (no memory). */
typedef int (*admin_view_fn)(void *data, struct admin_view *v);

/* A page's answer. */
struct admin_reply {
    int status;
    const char *type;      /* Content-Type */
    char *body;            /* malloc'd */
    size_t len;
};

/* Render `page` from `v`. Returns 0, or -1 when out of memory. */
int admin_render(const struct admin_view *v, enum admin_page page, struct admin_reply *r);

struct admin;

/* Listen on `addr` and serve on `loop`. Returns the listener, or NULL
 * (logged). */
struct admin *admin_start(const struct net_addr *addr, struct ev_loop *loop,
                          const struct log *log, admin_view_fn view, void *data);

/* Whether `ad` listens on `addr`. */
bool admin_listens_on(const struct admin *ad, const struct net_addr *addr);

/* Close the listener and every connection; memory goes at the end of the
 * loop's iteration (ev_run_pending after the loop has stopped). NULL-safe. */
void admin_stop(struct admin *ad);

#endif
