/* admin: the admin HTTP listener (see admin.h). */
#include "admin.h"
#include "../core/acceptor.h"
#include "../proto/http_head.h"
#include "../upstream/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The pages, by path. */
static const struct {
    const char *path;
    enum admin_page page;
} admin_routes[] = {
    { "/stats", ADMIN_STATS },
    { "/metrics", ADMIN_METRICS },
    { "/healthz", ADMIN_HEALTHZ },
    { "/ready", ADMIN_READY },
};

/* Status lines legate's admin answers with. */
static const struct {
    int status;
    const char *reason;
} admin_reasons[] = {
    { 200, "OK" }, { 400, "Bad Request" }, { 404, "Not Found" },
    { 405, "Method Not Allowed" }, { 414, "URI Too Long" },
    { 431, "Request Header Fields Too Large" }, { 500, "Internal Server Error" },
    { 501, "Not Implemented" }, { 503, "Service Unavailable" },
    { 505, "HTTP Version Not Supported" },
};

struct admin_conn {
    struct admin *ad;
    struct ev_io io;
    struct ev_timer timer;
    struct ev_defer release;
    struct http_parser hp;
    char *out;              /* the whole response, once known */
    size_t outlen;
    size_t outoff;
    bool replied;           /* the response is set: input is only drained */
    bool peer_done;         /* the client's side ended (EOF or error) */
    struct admin_conn *prev, *next;
};

struct admin {
    struct acceptor acc;
    struct ev_defer release;
    struct ev_loop *loop;
    const struct log *log;
    struct net_addr addr;
    int fd;
    admin_view_fn view;
    void *data;
    struct admin_conn *conns;
    unsigned nconns;
    struct log_limit refused_log; /* "too many clients": at most a line a second */
};

/* ---- requests ---- */

/* The verdict on a complete head. */
static void admin_judge(const struct http_head *h, struct admin_req *r)
{
    r->head = h->method == HTTP_HEAD;
    if (h->method != HTTP_GET && h->method != HTTP_HEAD) {
        r->status = 405;
        r->why = "only GET and HEAD";
        return;
    }
    const char *t = h->buf + h->target.off;
    size_t len = h->target.len;
    const char *q = memchr(t, '?', len);
    if (q != NULL) {
        len = (size_t)(q - t); /* a query string changes nothing */
    }
    for (size_t i = 0; i < sizeof(admin_routes) / sizeof(admin_routes[0]); i++) {
        if (strlen(admin_routes[i].path) == len && memcmp(admin_routes[i].path, t, len) == 0) {
            r->status = 200;
            r->page = admin_routes[i].page;
            return;
        }
    }
    r->status = 404;
    r->why = "no such page (try /stats, /metrics, /healthz, /ready)";
}

/* Feed bytes to a connection's parser. Returns 0 with *r once the head is
 * complete or wrong, -2 while more is needed. */
static int admin_feed(struct http_parser *hp, const char *data, size_t n, struct admin_req *r)
{
    while (n > 0 && !hp->head.done) {
        struct http_error err = { 0, NULL };
        long used = http_parser_feed(hp, data, n, &err);
        if (used < 0) {
            r->status = err.status ? err.status : 400;
            r->why = err.why ? err.why : "malformed request";
            r->head = false;
            return 0;
        }
        data += used;
        n -= (size_t)used;
    }
    if (!hp->head.done) {
        return -2;
    }
    admin_judge(&hp->head, r);
    return 0;
}

static int admin_body_ignored(void *owner, const char *at, size_t n)
{
    (void)owner;
    (void)at;
    (void)n;
    return 0;
}

int admin_parse(const char *buf, size_t n, size_t cut, struct admin_req *r)
{
    struct http_parser hp;
    http_parser_init(&hp, true, ADMIN_HEAD_MAX, ADMIN_LINE_MAX, NULL, NULL, admin_body_ignored);
    if (cut > n) {
        cut = n;
    }
    int rc = admin_feed(&hp, buf, cut, r);
    if (rc == -2) {
        rc = admin_feed(&hp, buf + cut, n - cut, r);
    }
    http_parser_free(&hp);
    return rc;
}

/* ---- pages ---- */

/* /ready's body: "ready", or one line per pool without a server up. */
static int admin_ready(const struct admin_view *v, struct admin_reply *r)
{
    size_t cap = 64;
    for (size_t p = 0; p < v->cf->npools; p++) {
        cap += strlen(v->cf->pools[p].name) + 64;
    }
    r->body = malloc(cap);
    if (r->body == NULL) {
        return -1;
    }
    size_t len = 0;
    bool ready = true;
    for (size_t p = 0; p < v->cf->npools; p++) {
        const struct server_table *tab = v->tabs[p];
        bool up = false;
        for (size_t s = 0; s < tab->nslots && !up; s++) {
            up = server_state_of(tab, s) == SERVER_ACTIVE &&
                 !atomic_load_explicit(&tab->down[s], memory_order_relaxed);
        }
        if (!up) {
            ready = false;
            len += (size_t)snprintf(r->body + len, cap - len, "pool '%s': no server up\n",
                                    v->cf->pools[p].name);
        }
    }
    if (ready) {
        len = (size_t)snprintf(r->body, cap, "ready\n");
    }
    r->status = ready ? 200 : 503;
    r->len = len;
    return 0;
}

int admin_render(const struct admin_view *v, enum admin_page page, struct admin_reply *r)
{
    long n = 0;
    r->status = 200;
    r->type = "text/plain; charset=utf-8";
    r->body = NULL;
    switch (page) {
    case ADMIN_STATS:
        r->type = "application/json";
        n = stats_json(&r->body, v->cf, v->tabs, v->ws, v->nworkers, v->started, v->source);
        break;
    case ADMIN_METRICS:
        r->type = "text/plain; version=0.0.4; charset=utf-8";
        n = stats_prometheus(&r->body, v->cf, v->tabs, v->ws, v->nworkers, v->started);
        break;
    case ADMIN_HEALTHZ:
        r->body = strdup("ok\n");
        n = r->body ? 3 : -1;
        break;
    case ADMIN_READY:
    default:
        return admin_ready(v, r);
    }
    if (n < 0) {
        return -1;
    }
    r->len = (size_t)n;
    return 0;
}

/* ---- connections ---- */

static void admin_conn_free(struct ev_loop *loop, struct ev_defer *d)
{
    (void)loop;
    struct admin_conn *c = d->data;
    http_parser_free(&c->hp);
    free(c->out);
    free(c);
}

static void admin_conn_close(struct admin_conn *c)
{
    struct admin *ad = c->ad;
    if (c->io.fd != -1) {
        int fd = c->io.fd;
        ev_io_del(ad->loop, &c->io);
        close(fd);
    }
    ev_timer_stop(ad->loop, &c->timer);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        ad->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    ad->nconns--;
    ev_defer(ad->loop, &c->release);
}

static const char *admin_reason(int status)
{
    for (size_t i = 0; i < sizeof(admin_reasons) / sizeof(admin_reasons[0]); i++) {
        if (admin_reasons[i].status == status) {
            return admin_reasons[i].reason;
        }
    }
    return "Error";
}

/* Build the response for `req` into c->out. Returns 0 or -1 (no memory). */
static int admin_respond(struct admin_conn *c, const struct admin_req *req)
{
    struct admin_reply r = { req->status, "text/plain; charset=utf-8", NULL, 0 };
    if (req->status == 200) {
        struct admin_view v;
        memset(&v, 0, sizeof(v));
        int rc = c->ad->view(c->ad->data, &v);
        if (rc == 0) {
            rc = admin_render(&v, req->page, &r);
        }
        free(v.tabs);
        if (rc == -1) {
            r = (struct admin_reply){ 500, "text/plain; charset=utf-8", NULL, 0 };
            r.body = strdup("out of memory\n");
            r.len = r.body ? strlen(r.body) : 0;
        }
    } else {
        size_t cap = strlen(req->why) + 2;
        r.body = malloc(cap);
        if (r.body != NULL) {
            r.len = (size_t)snprintf(r.body, cap, "%s\n", req->why);
        }
    }
    char head[256];
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "%sCache-Control: no-store\r\nConnection: close\r\n\r\n",
                      r.status, admin_reason(r.status), r.type, r.len,
                      r.status == 405 ? "Allow: GET, HEAD\r\n" : "");
    size_t blen = req->head ? 0 : r.len;
    c->out = malloc((size_t)hl + blen);
    if (c->out == NULL) {
        free(r.body);
        return -1;
    }
    memcpy(c->out, head, (size_t)hl);
    if (blen > 0) {
        memcpy(c->out + hl, r.body, blen);
    }
    c->outlen = (size_t)hl + blen;
    free(r.body);
    return 0;
}

/* Write what is left; once all is out, half-close and wait for the
 * client's EOF (closing with unread input would reset the connection
 * and could destroy the response before the client reads it). Returns
 * -1 when the connection was closed. */
static int admin_conn_write(struct admin_conn *c)
{
    while (c->outoff < c->outlen) {
        ssize_t w = send(c->io.fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
        if (w == -1 && errno == EINTR) {
            continue;
        }
        if (w == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        }
        if (w <= 0) {
            admin_conn_close(c);
            return -1;
        }
        c->outoff += (size_t)w;
    }
    if (c->out != NULL && c->outoff == c->outlen) {
        free(c->out);
        c->out = NULL;
        shutdown(c->io.fd, SHUT_WR);
    }
    return 0;
}

static void admin_conn_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    (void)events;
    struct admin_conn *c = io->data;
    char buf[4096];
    for (;;) {
        ssize_t n = read(io->fd, buf, sizeof(buf));
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        if (n <= 0) {
            c->peer_done = true; /* EOF or error: nothing more will come */
            break;
        }
        if (c->replied) {
            continue; /* after the head: drained until the client closes */
        }
        struct admin_req req;
        if (admin_feed(&c->hp, buf, (size_t)n, &req) == 0) {
            c->replied = true;
            if (admin_respond(c, &req) == -1) {
                admin_conn_close(c);
                return;
            }
        }
    }
    if (!c->replied) {
        if (c->peer_done) {
            admin_conn_close(c); /* gone before its head was complete */
        }
        return;
    }
    if (admin_conn_write(c) == 0 && c->out == NULL && c->peer_done) {
        admin_conn_close(c); /* all sent, and the client has closed its side */
    }
}

static void admin_conn_timeout(struct ev_loop *loop, struct ev_timer *t)
{
    (void)loop;
    struct admin_conn *c = t->data;
    log_info(c->ad->log, "admin: client timed out after %d ms", ADMIN_TIMEOUT_MS);
    admin_conn_close(c);
}

static void admin_accepted(struct acceptor *a, int fd)
{
    struct admin *ad = a->data;
    struct admin_conn *c = ad->nconns < ADMIN_MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
    if (c == NULL) {
        uint64_t held;
        if (log_limit_pass(&ad->refused_log, ev_now(ad->loop), &held)) {
            log_warn(ad->log, "admin: %s; connection closed (and %llu more held back since "
                     "the last line)", ad->nconns < ADMIN_MAX_CONNS ? "out of memory"
                                                                    : "too many clients",
                     (unsigned long long)held);
        }
        close(fd);
        return;
    }
    c->ad = ad;
    c->io = (struct ev_io){ .fd = fd, .fn = admin_conn_io, .data = c };
    c->timer = (struct ev_timer){ .fn = admin_conn_timeout, .data = c };
    c->release = (struct ev_defer){ .fn = admin_conn_free, .data = c };
    http_parser_init(&c->hp, true, ADMIN_HEAD_MAX, ADMIN_LINE_MAX, NULL, c, admin_body_ignored);
    if (ev_io_add(ad->loop, &c->io, EV_READ | EV_WRITE) == -1) {
        log_warn(ad->log, "admin: epoll: %s", strerror(errno));
        http_parser_free(&c->hp);
        free(c);
        close(fd);
        return;
    }
    c->next = ad->conns;
    if (c->next != NULL) {
        c->next->prev = c;
    }
    ad->conns = c;
    ad->nconns++;
    ev_timer_start(ad->loop, &c->timer, ADMIN_TIMEOUT_MS);
    admin_conn_io(ad->loop, &c->io, EV_READ);
}

/* ---- the listener ---- */

struct admin *admin_start(const struct net_addr *addr, struct ev_loop *loop,
                          const struct log *log, admin_view_fn view, void *data)
{
    char spec[NET_ADDR_STRLEN];
    net_addr_str(addr, spec, sizeof(spec));
    struct admin *ad = calloc(1, sizeof(*ad));
    int fd = ad ? net_listen(addr, 128, false, 0) : -1;
    if (fd == -1) {
        log_error(log, "cannot listen for admin on %s: %s", spec, strerror(errno));
        free(ad);
        return NULL;
    }
    ad->loop = loop;
    ad->log = log;
    ad->addr = *addr;
    ad->fd = fd;
    ad->view = view;
    ad->data = data;
    acceptor_init(&ad->acc, fd, "admin", log, admin_accepted, ad);
    if (acceptor_start(&ad->acc, loop) == -1) {
        log_error(log, "admin on %s: epoll: %s", spec, strerror(errno));
        close(fd);
        free(ad);
        return NULL;
    }
    log_notice(log, "admin on %s", spec);
    return ad;
}

bool admin_listens_on(const struct admin *ad, const struct net_addr *addr)
{
    return ad != NULL && net_addr_equal(&ad->addr, addr);
}

static void admin_free(struct ev_loop *loop, struct ev_defer *d)
{
    (void)loop;
    free(d->data);
}

void admin_stop(struct admin *ad)
{
    if (ad == NULL) {
        return;
    }
    acceptor_stop(&ad->acc, ad->loop);
    close(ad->fd);
    while (ad->conns != NULL) {
        admin_conn_close(ad->conns);
    }
    ad->release = (struct ev_defer){ .fn = admin_free, .data = ad };
    ev_defer(ad->loop, &ad->release);
}
