/* dns: asynchronous DNS lookups on an event loop (the resolver library's
 * sockets and timeouts driven by ev), for discovery: every address of a
 * name, and SRV records. The loop never blocks on a lookup.
 *
 * One dns per resolver configuration; callbacks run on the loop's thread,
 * exactly once per lookup — with an error text, or with the answer — except
 * that lookups still running when dns_close is called are dropped without
 * a callback. */
#ifndef LEGATE_DNS_H
#define LEGATE_DNS_H

#include "../core/ev.h"
#include "../core/net.h"

#include <stddef.h>
#include <stdint.h>

struct dns;

struct dns_srv {
    char *target;
    uint16_t port;
    uint16_t weight;
    uint16_t priority;
};

/* err: NULL on success. addrs[0, n) with `port`; ttl: the smallest record
 * TTL in seconds (UINT32_MAX when unknown). */
typedef void (*dns_addrs_fn)(void *arg, const char *err, const struct net_addr *addrs, size_t n,
                             uint32_t ttl);
typedef void (*dns_srv_fn)(void *arg, const char *err, const struct dns_srv *recs, size_t n,
                           uint32_t ttl);

/* A resolver on `loop`; `servers`: "ip:port,..." to ask instead of those of
 * /etc/resolv.conf (NULL: those). Returns 0, or -1 with a reason in err. */
int dns_open(struct dns **out, struct ev_loop *loop, const char *servers, char *err,
             size_t errlen);
/* Cancel what is running (no callbacks) and free. NULL-safe. */
void dns_close(struct dns *d);

/* Every A and AAAA address of `name` (hosts file first), with `port`. */
void dns_lookup_host(struct dns *d, const char *name, uint16_t port, dns_addrs_fn cb,
                     void *arg);
/* The SRV records of `name`. */
void dns_lookup_srv(struct dns *d, const char *name, dns_srv_fn cb, void *arg);

/* The smallest TTL among the answer records of the DNS message msg[0, len).
 * Returns 0, or -1 if the message is malformed or has no answer. */
int dns_answer_min_ttl(const unsigned char *msg, size_t len, uint32_t *ttl);

#endif
