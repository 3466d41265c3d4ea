/* dns: the resolver library on our event loop (see dns.h). */
#include "dns.h"

#include <ares.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

enum {
    DNS_MAX_SOCKETS = 32,     /* the library keeps a few per name server */
    DNS_TIMEOUT_MS = 1000,    /* per try */
    DNS_TRIES = 2,
    DNS_TYPE_SRV = 33,
    DNS_CLASS_IN = 1,
};

struct dns_watch {
    struct ev_io io;          /* fd -1: unused */
    struct dns *d;
};

struct dns {
    struct ev_loop *loop;
    ares_channel channel;
    struct ev_timer timer;    /* the library's next timeout */
    struct dns_watch watch[DNS_MAX_SOCKETS];
    bool closing;
};

/* One lookup in flight: what to call back. */
struct dns_req {
    struct dns *d;
    uint16_t port;
    dns_addrs_fn addrs_cb;
    dns_srv_fn srv_cb;
    void *arg;
};

static void dns_arm_timer(struct dns *d)
{
    struct timeval tv;
    struct timeval *t = ares_timeout(d->channel, NULL, &tv);
    if (t == NULL) {
        ev_timer_stop(d->loop, &d->timer);
        return;
    }
    uint64_t ms = (uint64_t)t->tv_sec * 1000 + (uint64_t)t->tv_usec / 1000;
    ev_timer_start(d->loop, &d->timer, ms ? ms : 1);
}

static void dns_timer(struct ev_loop *loop, struct ev_timer *t)
{
    (void)loop;
    struct dns *d = t->data;
    ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    dns_arm_timer(d);
}

static void dns_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    struct dns_watch *w = io->data;
    struct dns *d = w->d;
    ares_socket_t fd = io->fd;
    ares_process_fd(d->channel, (events & (EV_READ | EV_HUP)) ? fd : ARES_SOCKET_BAD,
                    (events & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    dns_arm_timer(d);
}

/* The library opens, closes and changes interest in its sockets. */
static void dns_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns *d = data;
    struct dns_watch *w = NULL;
    struct dns_watch *unused = NULL;
    for (size_t i = 0; i < DNS_MAX_SOCKETS; i++) {
        if (d->watch[i].io.fd == fd) {
            w = &d->watch[i];
        } else if (d->watch[i].io.fd == -1 && unused == NULL) {
            unused = &d->watch[i];
        }
    }
    unsigned ev = (readable ? EV_READ : 0u) | (writable ? EV_WRITE : 0u);
    if (w != NULL) {
        if (ev == 0) {
            ev_io_del(d->loop, &w->io);
        } else {
            (void)ev_io_mod_level(d->loop, &w->io, ev);
        }
        return;
    }
    if (ev == 0 || unused == NULL) {
        return; /* no room: the lookup times out and is counted as failed */
    }
    unused->io = (struct ev_io){ .fd = fd, .fn = dns_io, .data = unused };
    if (ev_io_add_level(d->loop, &unused->io, ev) == -1) {
        unused->io.fd = -1;
    }
}

int dns_open(struct dns **out, struct ev_loop *loop, const char *servers, char *err,
             size_t errlen)
{
    *out = NULL;
    int rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "resolver: %s", ares_strerror(rc));
        return -1;
    }
    struct dns *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        ares_library_cleanup();
        snprintf(err, errlen, "resolver: out of memory");
        return -1;
    }
    d->loop = loop;
    d->timer = (struct ev_timer){ .fn = dns_timer, .data = d };
    for (size_t i = 0; i < DNS_MAX_SOCKETS; i++) {
        d->watch[i].io.fd = -1;
        d->watch[i].d = d;
    }
    struct ares_options o;
    memset(&o, 0, sizeof(o));
    o.sock_state_cb = dns_sock_state;
    o.sock_state_cb_data = d;
    o.timeout = DNS_TIMEOUT_MS;
    o.tries = DNS_TRIES;
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    rc = ares_init_options(&d->channel, &o, mask);
    if (rc == ARES_SUCCESS && servers != NULL) {
        rc = ares_set_servers_ports_csv(d->channel, servers);
        if (rc != ARES_SUCCESS) {
            ares_destroy(d->channel);
        }
    }
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "resolver: %s", ares_strerror(rc));
        free(d);
        ares_library_cleanup();
        return -1;
    }
    *out = d;
    return 0;
}

void dns_close(struct dns *d)
{
    if (d == NULL) {
        return;
    }
    d->closing = true;
    ares_destroy(d->channel); /* running lookups end with ARES_EDESTRUCTION */
    for (size_t i = 0; i < DNS_MAX_SOCKETS; i++) {
        ev_io_del(d->loop, &d->watch[i].io);
    }
    ev_timer_stop(d->loop, &d->timer);
    free(d);
    ares_library_cleanup();
}

static struct dns_req *dns_req_new(struct dns *d, void *arg)
{
    struct dns_req *r = calloc(1, sizeof(*r));
    if (r != NULL) {
        r->d = d;
        r->arg = arg;
    }
    return r;
}

static void dns_host_done(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct dns_req *r = arg;
    if (status == ARES_EDESTRUCTION || r->d->closing) {
        ares_freeaddrinfo(res);
        free(r);
        return;
    }
    if (status != ARES_SUCCESS || res == NULL) {
        r->addrs_cb(r->arg, ares_strerror(status), NULL, 0, UINT32_MAX);
        ares_freeaddrinfo(res);
        free(r);
        return;
    }
    size_t n = 0;
    for (struct ares_addrinfo_node *a = res->nodes; a != NULL; a = a->ai_next) {
        n++;
    }
    struct net_addr *addrs = calloc(n ? n : 1, sizeof(*addrs));
    size_t k = 0;
    uint32_t ttl = UINT32_MAX;
    for (struct ares_addrinfo_node *a = res->nodes; addrs != NULL && a != NULL; a = a->ai_next) {
        if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
            a->ai_addrlen > sizeof(addrs[k].ss)) {
            continue;
        }
        memcpy(&addrs[k].ss, a->ai_addr, a->ai_addrlen);
        addrs[k].len = a->ai_addrlen;
        addrs[k].family = a->ai_family;
        if (a->ai_family == AF_INET) {
            ((struct sockaddr_in *)&addrs[k].ss)->sin_port = htons(r->port);
        } else {
            ((struct sockaddr_in6 *)&addrs[k].ss)->sin6_port = htons(r->port);
        }
        if (a->ai_ttl >= 0 && (uint32_t)a->ai_ttl < ttl) {
            ttl = (uint32_t)a->ai_ttl;
        }
        k++;
    }
    if (addrs == NULL) {
        r->addrs_cb(r->arg, "out of memory", NULL, 0, UINT32_MAX);
    } else if (k == 0) {
        r->addrs_cb(r->arg, "no addresses", NULL, 0, UINT32_MAX);
    } else {
        r->addrs_cb(r->arg, NULL, addrs, k, ttl);
    }
    free(addrs);
    ares_freeaddrinfo(res);
    free(r);
}

void dns_lookup_host(struct dns *d, const char *name, uint16_t port, dns_addrs_fn cb,
                     void *arg)
{
    struct dns_req *r = dns_req_new(d, arg);
    if (r == NULL) {
        cb(arg, "out of memory", NULL, 0, UINT32_MAX);
        return;
    }
    r->port = port;
    r->addrs_cb = cb;
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    ares_getaddrinfo(d->channel, name, NULL, &hints, dns_host_done, r);
    dns_arm_timer(d);
}

static void dns_srv_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    struct dns_req *r = arg;
    if (status == ARES_EDESTRUCTION || r->d->closing) {
        free(r);
        return;
    }
    struct ares_srv_reply *reply = NULL;
    if (status == ARES_SUCCESS) {
        status = ares_parse_srv_reply(abuf, alen, &reply);
    }
    if (status != ARES_SUCCESS) {
        r->srv_cb(r->arg, ares_strerror(status), NULL, 0, UINT32_MAX);
        free(r);
        return;
    }
    uint32_t ttl = UINT32_MAX;
    (void)dns_answer_min_ttl(abuf, (size_t)alen, &ttl);
    size_t n = 0;
    for (struct ares_srv_reply *s = reply; s != NULL; s = s->next) {
        n++;
    }
    struct dns_srv *recs = calloc(n ? n : 1, sizeof(*recs));
    size_t k = 0;
    for (struct ares_srv_reply *s = reply; recs != NULL && s != NULL; s = s->next) {
        recs[k++] = (struct dns_srv){ .target = s->host, .port = s->port, .weight = s->weight,
                                      .priority = s->priority };
    }
    if (recs == NULL) {
        r->srv_cb(r->arg, "out of memory", NULL, 0, UINT32_MAX);
    } else if (k == 0) {
        r->srv_cb(r->arg, "no SRV records", NULL, 0, UINT32_MAX);
    } else {
        r->srv_cb(r->arg, NULL, recs, k, ttl);
    }
    free(recs);
    ares_free_data(reply);
    free(r);
}

void dns_lookup_srv(struct dns *d, const char *name, dns_srv_fn cb, void *arg)
{
    struct dns_req *r = dns_req_new(d, arg);
    if (r == NULL) {
        cb(arg, "out of memory", NULL, 0, UINT32_MAX);
        return;
    }
    r->srv_cb = cb;
    ares_query(d->channel, name, DNS_CLASS_IN, DNS_TYPE_SRV, dns_srv_done, r);
    dns_arm_timer(d);
}

/* Skip a (possibly compressed) name at msg[*at]. Returns 0, or -1 when it
 * runs past the end or is malformed. */
static int dns_skip_name(const unsigned char *msg, size_t len, size_t *at)
{
    size_t i = *at;
    for (unsigned labels = 0; labels < 128; labels++) {
        if (i >= len) {
            return -1;
        }
        unsigned c = msg[i];
        if (c == 0) {
            *at = i + 1;
            return 0;
        }
        if ((c & 0xC0) == 0xC0) { /* a pointer ends the name */
            if (i + 2 > len) {
                return -1;
            }
            *at = i + 2;
            return 0;
        }
        if ((c & 0xC0) != 0) {
            return -1;
        }
        i += 1 + c;
    }
    return -1;
}

int dns_answer_min_ttl(const unsigned char *msg, size_t len, uint32_t *ttl)
{
    if (len < 12) {
        return -1;
    }
    unsigned qd = (unsigned)msg[4] << 8 | msg[5];
    unsigned an = (unsigned)msg[6] << 8 | msg[7];
    size_t at = 12;
    for (unsigned q = 0; q < qd; q++) {
        if (dns_skip_name(msg, len, &at) == -1 || at + 4 > len) {
            return -1;
        }
        at += 4; /* type, class */
    }
    if (an == 0) {
        return -1;
    }
    uint32_t best = UINT32_MAX;
    for (unsigned a = 0; a < an; a++) {
        if (dns_skip_name(msg, len, &at) == -1 || at + 10 > len) {
            return -1;
        }
        uint32_t t = (uint32_t)msg[at + 4] << 24 | (uint32_t)msg[at + 5] << 16 |
                     (uint32_t)msg[at + 6] << 8 | msg[at + 7];
        size_t rdlen = (size_t)msg[at + 8] << 8 | msg[at + 9];
        at += 10;
        if (at + rdlen > len) {
            return -1;
        }
        at += rdlen;
        best = t < best ? t : best;
    }
    *ttl = best;
    return 0;
}
