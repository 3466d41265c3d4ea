/* conf_discovery: the discovery: key of a pool —
 *   discovery:
 *     dns: NAME:PORT        # every A/AAAA address of NAME is a server
 *     dns_srv: NAME         # or: target, port and weight from SRV records
 *     file: PATH            # or: a file of `servers:` lines, re-read on change
 *     resolvers: [127.0.0.1:53]   # dns, dns_srv: instead of /etc/resolv.conf
 *     interval: 5s          # lookups (or file checks) at most this far apart
 *     max_endpoints: 64     # slots for discovered servers
 * Exactly one source. The same map may stand in a split arm or the mirror
 * (conf_http.c): each is a group of slots of its own. */
#include "conf_int.h"
#include "conf_value.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    DISC_MAX_ENDPOINTS = 1024,
    DISC_MAX_INTERVAL_MS = 24 * 3600 * 1000,
    DISC_MAX_NAME = 253,
    DISC_MAX_RESOLVERS = 8,
};

static int dk_source(struct conf_ctx *cx, struct conf_discovery *d, const struct conf_node *v,
                     const char *key, enum conf_disc kind)
{
    if (d->kind != CONF_DISC_NONE) {
        return conf_fail(cx, v, key, "one source per pool (dns, dns_srv or file)");
    }
    if (conf_want_scalar(cx, v, key) == -1) {
        return -1;
    }
    const char *s = v->value;
    size_t len = strlen(s);
    if (kind == CONF_DISC_DNS) {
        const char *colon = strrchr(s, ':');
        uint64_t port;
        const char *why;
        if (colon == NULL || colon == s ||
            conf_value_uint(colon + 1, 1, 65535, &port, &why) == -1) {
            return conf_fail(cx, v, key, "expected NAME:PORT, got '%s'", s);
        }
        len = (size_t)(colon - s);
        d->port = (uint16_t)port;
    }
    if (len == 0 || (kind != CONF_DISC_FILE && len > DISC_MAX_NAME)) {
        return conf_fail(cx, v, key, "expected a %s", kind == CONF_DISC_FILE ? "path" : "name");
    }
    if (kind != CONF_DISC_FILE && strcspn(s, " \t[]/") < len) {
        return conf_fail(cx, v, key, "'%.*s' is not a DNS name", (int)len, s);
    }
    d->name = strndup(s, len);
    if (d->name == NULL) {
        return conf_fail(cx, v, key, "out of memory");
    }
    d->kind = kind;
    return 0;
}

/* One resolver "ip[:port]" (or "[v6]:port") appended to d->resolvers as
 * the resolver library's "ip:port" list. */
static int dk_resolver(struct conf_ctx *cx, struct conf_discovery *d, const struct conf_node *v,
                       const char *key)
{
    if (conf_want_scalar(cx, v, key) == -1) {
        return -1;
    }
    const char *s = v->value;
    char host[64];
    uint64_t port = 53;
    const char *why;
    const char *end = NULL;
    bool v6 = s[0] == '[';
    if (v6) {
        end = strchr(s, ']');
        if (end == NULL || (size_t)(end - s - 1) >= sizeof(host)) {
            return conf_fail(cx, v, key, "expected an IP address[:port], got '%s'", s);
        }
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        end++;
    } else {
        size_t hl = strcspn(s, ":");
        if (hl >= sizeof(host)) {
            return conf_fail(cx, v, key, "expected an IP address[:port], got '%s'", s);
        }
        memcpy(host, s, hl);
        host[hl] = '\0';
        end = s + hl;
    }
    unsigned char bin[16];
    if (inet_pton(v6 ? AF_INET6 : AF_INET, host, bin) != 1 ||
        (*end != '\0' && (*end != ':' || conf_value_uint(end + 1, 1, 65535, &port, &why) == -1))) {
        return conf_fail(cx, v, key, "expected an IP address[:port], got '%s'", s);
    }
    size_t old = d->resolvers ? strlen(d->resolvers) : 0;
    size_t room = strlen(host) + 16; /* ",[" host "]:" port */
    char *r = realloc(d->resolvers, old + room);
    if (r == NULL) {
        return conf_fail(cx, v, key, "out of memory");
    }
    snprintf(r + old, room, "%s%s%s%s:%u", old ? "," : "", v6 ? "[" : "", host,
             v6 ? "]" : "", (unsigned)port);
    d->resolvers = r;
    return 0;
}

static int dk_resolvers(struct conf_ctx *cx, struct conf_discovery *d, const struct conf_node *v,
                        const char *key)
{
    if (v->kind == CONF_SCALAR) {
        return dk_resolver(cx, d, v, key);
    }
    if (v->kind != CONF_SEQ || v->n == 0 || v->n > DISC_MAX_RESOLVERS) {
        return conf_fail(cx, v, key, "expected a list of 1 to %d addresses", DISC_MAX_RESOLVERS);
    }
    for (size_t i = 0; i < v->n; i++) {
        if (dk_resolver(cx, d, v->items[i], key) == -1) {
            return -1;
        }
    }
    return 0;
}

/* One discovery map into d. */
static int conf_discovery_parse(struct conf_ctx *cx, struct conf_discovery *d,
                                const struct conf_node *v, const char *key)
{
    d->line = v->line;
    if (v->kind != CONF_MAP) {
        return conf_fail(cx, v, key, "expected { dns: NAME:PORT | dns_srv: NAME | file: PATH, "
                         "resolvers, interval, max_endpoints }");
    }
    const struct conf_node *resolvers = NULL;
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        const char *k = v->items[i]->value;
        const struct conf_node *val = v->items[i + 1];
        int rc;
        if (strcmp(k, "dns") == 0) {
            rc = dk_source(cx, d, val, k, CONF_DISC_DNS);
        } else if (strcmp(k, "dns_srv") == 0) {
            rc = dk_source(cx, d, val, k, CONF_DISC_SRV);
        } else if (strcmp(k, "file") == 0) {
            rc = dk_source(cx, d, val, k, CONF_DISC_FILE);
        } else if (strcmp(k, "resolvers") == 0) {
            resolvers = val;
            rc = dk_resolvers(cx, d, val, k);
        } else if (strcmp(k, "interval") == 0) {
            rc = conf_read_duration(cx, val, k, &d->interval);
            if (rc == 0 && (d->interval == 0 || d->interval > DISC_MAX_INTERVAL_MS)) {
                rc = conf_fail(cx, val, k, "must be between 1ms and 24h");
            }
        } else if (strcmp(k, "max_endpoints") == 0) {
            rc = conf_read_unsigned(cx, val, k, 1, DISC_MAX_ENDPOINTS, &d->max_endpoints);
        } else {
            rc = conf_fail(cx, v->items[i], key, "unknown key '%s' (dns, dns_srv, file, "
                           "resolvers, interval, max_endpoints)", k);
        }
        if (rc == -1) {
            return -1;
        }
    }
    if (d->kind == CONF_DISC_NONE) {
        return conf_fail(cx, v, key, "no source: give one of dns, dns_srv or file");
    }
    if (resolvers != NULL && d->kind == CONF_DISC_FILE) {
        return conf_fail(cx, resolvers, "resolvers", "applies only to dns and dns_srv");
    }
    return 0;
}

int conf_discovery_add(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                       const char *key, int owner)
{
    struct conf_discovery *grown = realloc(p->disc, (p->ndisc + 1) * sizeof(*grown));
    if (grown == NULL) {
        return conf_fail(cx, v, key, "out of memory");
    }
    p->disc = grown;
    struct conf_discovery *d = &p->disc[p->ndisc++];
    memset(d, 0, sizeof(*d));
    d->owner = owner;
    d->kind = CONF_DISC_NONE;
    d->interval = 5000;
    d->max_endpoints = 64;
    return conf_discovery_parse(cx, d, v, key);
}

int conf_discovery_read(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                        const char *key)
{
    return conf_discovery_add(cx, p, v, key, CONF_DISC_POOL);
}

void conf_discovery_finish(struct conf_pool *p)
{
    size_t first = p->nservers;
    for (size_t i = 0; i < p->ndisc; i++) {
        p->disc[i].first = first;
        first += p->disc[i].max_endpoints;
    }
}

void conf_discovery_free(struct conf_pool *p)
{
    for (size_t i = 0; i < p->ndisc; i++) {
        free(p->disc[i].name);
        free(p->disc[i].resolvers);
    }
    free(p->disc);
    p->disc = NULL;
    p->ndisc = 0;
}
