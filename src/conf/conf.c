/* conf: YAML config to an immutable snapshot, validated against key tables
 * (see conf.h). Every error names file:line:column, the pool and the key. */
#include "conf.h"
#include "conf_int.h"
#include "conf_tree.h"
#include "conf_value.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Protocol masks for the key tables. */
enum {
    P_TCP = 1u << CONF_PROTO_TCP,
    P_REDIS = 1u << CONF_PROTO_REDIS,
    P_MC = 1u << CONF_PROTO_MEMCACHE,
    P_HTTP = 1u << CONF_PROTO_HTTP,
    P_SHARD = P_REDIS | P_MC,
    P_ANY = P_TCP | P_SHARD | P_HTTP,
};

/* Protocols this build can run; the others parse but are refused. */
enum { P_IMPLEMENTED = P_TCP | P_REDIS | P_MC | P_HTTP };

static const char *const conf_proto_names[] = { "tcp", "redis", "memcache", "http", NULL };
static const char *const conf_balance_names[] = {
    "round_robin", "least_connections", "random", "p2c_ewma", NULL,
};
static const char *const conf_dist_names[] = { "ketama", "modula", "random", NULL };
static const char *const conf_hash_names[] = {
    "one_at_a_time", "md5", "crc16", "crc32", "crc32a", "fnv1_64", "fnv1a_64",
    "fnv1_32", "fnv1a_32", "hsieh", "murmur", "jenkins", NULL,
};

const char *conf_proto_name(enum conf_proto p)
{
    return conf_proto_names[p];
}

const char *conf_balance_name(enum conf_balance b)
{
    return conf_balance_names[b];
}

int conf_hash_parse(const char *s, enum conf_hash *out)
{
    unsigned x;
    const char *why;
    if (conf_value_enum(s, conf_hash_names, &x, &why) == -1) {
        return -1;
    }
    *out = (enum conf_hash)x;
    return 0;
}

int conf_dist_parse(const char *s, enum conf_dist *out)
{
    unsigned x;
    const char *why;
    if (conf_value_enum(s, conf_dist_names, &x, &why) == -1) {
        return -1;
    }
    *out = (enum conf_dist)x;
    return 0;
}

int conf_fail(struct conf_ctx *cx, const struct conf_node *n,
                     const char *key, const char *fmt, ...)
{
    size_t off = 0;
    int k = snprintf(cx->err, cx->errlen, "%s:%d:%d: ", cx->file, n ? n->line : 1,
                     n ? n->col : 1);
    if (k > 0 && (size_t)k < cx->errlen) {
        off = (size_t)k;
    }
    if (cx->pool != NULL && off < cx->errlen) {
        k = snprintf(cx->err + off, cx->errlen - off, "pool '%s': ", cx->pool);
        off += k > 0 ? (size_t)k : 0;
    }
    if (key != NULL && off < cx->errlen) {
        k = snprintf(cx->err + off, cx->errlen - off, "key '%s': ", key);
        off += k > 0 ? (size_t)k : 0;
    }
    if (off < cx->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(cx->err + off, cx->errlen - off, fmt, ap);
        va_end(ap);
    }
    return -1;
}

const char *conf_kind_name(const struct conf_node *n)
{
    static const char *const names[] = { "a scalar", "a list", "a mapping" };
    return names[n->kind];
}

int conf_want_scalar(struct conf_ctx *cx, const struct conf_node *v, const char *key)
{
    if (v->kind != CONF_SCALAR) {
        return conf_fail(cx, v, key, "expected a single value, got %s", conf_kind_name(v));
    }
    return 0;
}

/* ---- typed readers: node -> value, with the error formatted ---- */

int conf_read_uint(struct conf_ctx *cx, const struct conf_node *v, const char *key,
                          uint64_t min, uint64_t max, uint64_t *out)
{
    const char *why;
    if (conf_want_scalar(cx, v, key) == -1) {
        return -1;
    }
    if (conf_value_uint(v->value, min, max, out, &why) == -1) {
        return conf_fail(cx, v, key, "%s: '%s' (allowed %llu..%llu)", why, v->value,
                         (unsigned long long)min, (unsigned long long)max);
    }
    return 0;
}

int conf_read_int(struct conf_ctx *cx, const struct conf_node *v, const char *key,
                  int min, int max, int *out)
{
    const char *why;
    int64_t x;
    if (conf_want_scalar(cx, v, key) == -1) {
        return -1;
    }
    if (conf_value_int(v->value, min, max, &x, &why) == -1) {
        return conf_fail(cx, v, key, "%s: '%s' (allowed %d..%d)", why, v->value, min, max);
    }
    *out = (int)x;
    return 0;
}

int conf_read_unsigned(struct conf_ctx *cx, const struct conf_node *v,
                              const char *key, unsigned min, unsigned max, unsigned *out)
{
    uint64_t x;
    if (conf_read_uint(cx, v, key, min, max, &x) == -1) {
        return -1;
    }
    *out = (unsigned)x;
    return 0;
}

int conf_read_bool(struct conf_ctx *cx, const struct conf_node *v, const char *key,
                          bool *out)
{
    const char *why;
    if (conf_want_scalar(cx, v, key) == -1) {
        return -1;
    }
    if (conf_value_bool(v->value, out, &why) == -1) {
        return conf_fail(cx, v, key, "%s, got '%s'", why, v->value);
    }
    return 0;
}

int conf_read_duration(struct conf_ctx *cx, const struct conf_node *v,
                              const char *key, uint64_t *out)
{
    const char *why;
    if (conf_want_scalar(cx, v, key) == -1) {
        return -1;
    }
    if (conf_value_duration(v->value, out, &why) == -1) {
        return conf_fail(cx, v, key, "%s, got '%s'", why, v->value);
    }
    return 0;
}

int conf_read_enum(struct conf_ctx *cx, const struct conf_node *v, const char *key,
                          const char *const *names, unsigned *out)
{
    const char *why;
    if (conf_want_scalar(cx, v, key) == -1) {
        return -1;
    }
    if (conf_value_enum(v->value, names, out, &why) == -1) {
        char list[256];
        size_t off = 0;
        for (size_t i = 0; names[i] != NULL && off < sizeof(list); i++) {
            int k = snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "", names[i]);
            off += k > 0 ? (size_t)k : 0;
        }
        return conf_fail(cx, v, key, "unknown value '%s' (one of: %s)", v->value, list);
    }
    return 0;
}

/* ---- pool keys ---- */

struct conf_pool_key {
    const char *name;
    unsigned protos; /* pools this key applies to */
    int (*read)(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                const char *key);
};

static int pk_listen(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                     const char *key)
{
    if (conf_want_scalar(cx, v, key) == -1) {
        return -1;
    }
    const char *s = v->value;
    size_t sp = strcspn(s, " \t");
    char addr[300];
    if (sp == 0 || sp >= sizeof(addr)) {
        return conf_fail(cx, v, key, "expected host:port, [ipv6]:port or /path [mode]");
    }
    memcpy(addr, s, sp);
    addr[sp] = '\0';
    const char *rest = s + sp + strspn(s + sp, " \t");
    char why[256];
    if (net_addr_parse(addr, &p->listen, why, sizeof(why)) == -1) {
        return conf_fail(cx, v, key, "%s", why);
    }
    if (*rest != '\0') {
        const char *w;
        if (p->listen.family != AF_UNIX) {
            return conf_fail(cx, v, key, "a permission mode applies only to a unix socket");
        }
        if (conf_value_mode(rest, &p->listen_mode, &w) == -1) {
            return conf_fail(cx, v, key, "%s, got '%s'", w, rest);
        }
    }
    free(p->listen_spec);
    p->listen_spec = strdup(s);
    return p->listen_spec ? 0 : conf_fail(cx, v, key, "out of memory");
}

static int pk_protocol(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                       const char *key)
{
    unsigned x;
    if (conf_read_enum(cx, v, key, conf_proto_names, &x) == -1) {
        return -1;
    }
    p->proto = (enum conf_proto)x;
    return 0;
}

static int pk_redis(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                    const char *key)
{
    bool on;
    if (conf_read_bool(cx, v, key, &on) == -1) {
        return -1;
    }
    p->proto = on ? CONF_PROTO_REDIS : CONF_PROTO_MEMCACHE;
    return 0;
}

static int pk_backlog(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                      const char *key)
{
    unsigned x;
    if (conf_read_unsigned(cx, v, key, 1, 65535, &x) == -1) {
        return -1;
    }
    p->backlog = (int)x;
    return 0;
}

static int pk_client_connections(struct conf_ctx *cx, struct conf_pool *p,
                                 const struct conf_node *v, const char *key)
{
    unsigned x;
    if (conf_read_unsigned(cx, v, key, 0, 1000000, &x) == -1) {
        return -1;
    }
    p->client_connections = x;
    return 0;
}

static int pk_tcpkeepalive(struct conf_ctx *cx, struct conf_pool *p,
                           const struct conf_node *v, const char *key)
{
    return conf_read_bool(cx, v, key, &p->tcpkeepalive);
}

/* `timeout: N` (twemproxy: request timeout, ms) or a map of phases. */
static int pk_timeout(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                      const char *key)
{
    if (v->kind == CONF_SCALAR) {
        uint64_t ms;
        if (conf_read_duration(cx, v, key, &ms) == -1) {
            return -1;
        }
        /* A tcp pool has no requests: the one number bounds the connect. */
        if (p->proto == CONF_PROTO_TCP) {
            p->timeout_connect = ms;
        } else {
            p->timeout_request = ms;
        }
        return 0;
    }
    if (v->kind != CONF_MAP) {
        return conf_fail(cx, v, key, "expected a duration or a mapping of connect, request, "
                         "idle");
    }
    static const char *const phases[] = { "connect", "request", "idle", "header", NULL };
    uint64_t *slots[] = { &p->timeout_connect, &p->timeout_request, &p->timeout_idle,
                          &p->timeout_header };
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        unsigned which;
        const char *why;
        if (conf_value_enum(v->items[i]->value, phases, &which, &why) == -1 ||
            (which == 3 && p->proto != CONF_PROTO_HTTP)) {
            return conf_fail(cx, v->items[i], key,
                             "unknown phase '%s' (one of: connect, request, idle%s)",
                             v->items[i]->value,
                             p->proto == CONF_PROTO_HTTP ? ", header" : "");
        }
        if (conf_read_duration(cx, v->items[i + 1], v->items[i]->value, slots[which]) == -1) {
            return -1;
        }
    }
    return 0;
}

static int pk_balance(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                      const char *key)
{
    unsigned x;
    if (conf_read_enum(cx, v, key, conf_balance_names, &x) == -1) {
        return -1;
    }
    p->balance = (enum conf_balance)x;
    return 0;
}

static int pk_retries(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                      const char *key)
{
    return conf_read_unsigned(cx, v, key, 0, CONF_MAX_RETRIES, &p->retries);
}

static int pk_max_connections(struct conf_ctx *cx, struct conf_pool *p,
                              const struct conf_node *v, const char *key)
{
    return conf_read_unsigned(cx, v, key, 1, 10000000, &p->max_connections);
}

static int pk_max_pending(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                          const char *key)
{
    return conf_read_unsigned(cx, v, key, 1, 100000000, &p->max_pending);
}

/* outlier_detection: { failures: 5, ejection_time: 5s, max_ejection_time:
 * 300s, max_ejected_percent: 50 } or false. */
static int pk_outlier(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                      const char *key)
{
    if (v->kind == CONF_SCALAR) {
        bool on;
        if (conf_read_bool(cx, v, key, &on) == -1) {
            return -1;
        }
        p->outlier_failures = on ? 5 : 0;
        return 0;
    }
    if (v->kind != CONF_MAP) {
        return conf_fail(cx, v, key, "expected { failures, ejection_time, max_ejection_time, "
                         "max_ejected_percent } or false");
    }
    p->outlier_failures = 5;
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        const char *k = v->items[i]->value;
        const struct conf_node *val = v->items[i + 1];
        int rc;
        if (strcmp(k, "failures") == 0) {
            rc = conf_read_unsigned(cx, val, k, 1, 1000, &p->outlier_failures);
        } else if (strcmp(k, "ejection_time") == 0) {
            rc = conf_read_duration(cx, val, k, &p->outlier_time);
            if (rc == 0 && p->outlier_time == 0) {
                rc = conf_fail(cx, val, k, "must be > 0");
            }
        } else if (strcmp(k, "max_ejection_time") == 0) {
            rc = conf_read_duration(cx, val, k, &p->outlier_max_time);
        } else if (strcmp(k, "max_ejected_percent") == 0) {
            rc = conf_read_unsigned(cx, val, k, 0, 100, &p->outlier_max_percent);
        } else {
            rc = conf_fail(cx, v->items[i], key, "unknown key '%s' (failures, ejection_time, "
                           "max_ejection_time, max_ejected_percent)", k);
        }
        if (rc == -1) {
            return -1;
        }
    }
    if (p->outlier_max_time < p->outlier_time) {
        return conf_fail(cx, v, key, "max_ejection_time is shorter than ejection_time");
    }
    return 0;
}

/* retry_budget: { percent: 20, min_per_second: 10 } or false. */
static int pk_retry_budget(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                           const char *key)
{
    if (v->kind == CONF_SCALAR) {
        bool on;
        if (conf_read_bool(cx, v, key, &on) == -1) {
            return -1;
        }
        p->retry_budget = on;
        return 0;
    }
    if (v->kind != CONF_MAP) {
        return conf_fail(cx, v, key, "expected { percent, min_per_second } or false");
    }
    p->retry_budget = true;
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        const char *k = v->items[i]->value;
        const struct conf_node *val = v->items[i + 1];
        int rc;
        if (strcmp(k, "percent") == 0) {
            rc = conf_read_unsigned(cx, val, k, 0, 100, &p->retry_percent);
        } else if (strcmp(k, "min_per_second") == 0) {
            rc = conf_read_unsigned(cx, val, k, 0, 100000, &p->retry_min_per_second);
        } else {
            rc = conf_fail(cx, v->items[i], key, "unknown key '%s' (percent, min_per_second)", k);
        }
        if (rc == -1) {
            return -1;
        }
    }
    return 0;
}

static int pk_hash(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                   const char *key)
{
    unsigned x;
    if (conf_read_enum(cx, v, key, conf_hash_names, &x) == -1) {
        return -1;
    }
    p->hash = (enum conf_hash)x;
    return 0;
}

static int pk_hash_tag(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                       const char *key)
{
    if (conf_want_scalar(cx, v, key) == -1) {
        return -1;
    }
    if (strlen(v->value) != 2) {
        return conf_fail(cx, v, key, "expected two characters such as \"{}\", got '%s'",
                         v->value);
    }
    memcpy(p->hash_tag, v->value, 2);
    p->has_hash_tag = true;
    return 0;
}

static int pk_distribution(struct conf_ctx *cx, struct conf_pool *p,
                           const struct conf_node *v, const char *key)
{
    unsigned x;
    if (conf_read_enum(cx, v, key, conf_dist_names, &x) == -1) {
        return -1;
    }
    p->distribution = (enum conf_dist)x;
    return 0;
}

static int pk_preconnect(struct conf_ctx *cx, struct conf_pool *p,
                         const struct conf_node *v, const char *key)
{
    return conf_read_bool(cx, v, key, &p->preconnect);
}

static int pk_server_connections(struct conf_ctx *cx, struct conf_pool *p,
                                 const struct conf_node *v, const char *key)
{
    return conf_read_unsigned(cx, v, key, 1, 1024, &p->server_connections);
}

static int pk_auto_eject_hosts(struct conf_ctx *cx, struct conf_pool *p,
                               const struct conf_node *v, const char *key)
{
    return conf_read_bool(cx, v, key, &p->auto_eject_hosts);
}

static int pk_server_retry_timeout(struct conf_ctx *cx, struct conf_pool *p,
                                   const struct conf_node *v, const char *key)
{
    return conf_read_duration(cx, v, key, &p->server_retry_timeout);
}

static int pk_server_failure_limit(struct conf_ctx *cx, struct conf_pool *p,
                                   const struct conf_node *v, const char *key)
{
    return conf_read_unsigned(cx, v, key, 1, 1000000, &p->server_failure_limit);
}

static int pk_redis_auth(struct conf_ctx *cx, struct conf_pool *p,
                         const struct conf_node *v, const char *key)
{
    if (conf_want_scalar(cx, v, key) == -1) {
        return -1;
    }
    if (v->value[0] == '\0' || strlen(v->value) > 512) {
        return conf_fail(cx, v, key, "expected a password of 1 to 512 bytes");
    }
    free(p->redis_auth);
    p->redis_auth = strdup(v->value);
    return p->redis_auth ? 0 : conf_fail(cx, v, key, "out of memory");
}

static int pk_redis_db(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                       const char *key)
{
    if (conf_read_unsigned(cx, v, key, 0, 1000000, &p->redis_db) == -1) {
        return -1;
    }
    return 0;
}

static int pk_redis_user(struct conf_ctx *cx, struct conf_pool *p,
                         const struct conf_node *v, const char *key)
{
    if (conf_want_scalar(cx, v, key) == -1) {
        return -1;
    }
    if (v->value[0] == '\0' || strlen(v->value) > 128 || strpbrk(v->value, " \t\r\n")) {
        return conf_fail(cx, v, key, "expected a user name of 1 to 128 bytes without spaces");
    }
    free(p->redis_user);
    p->redis_user = strdup(v->value);
    return p->redis_user ? 0 : conf_fail(cx, v, key, "out of memory");
}

static int pk_servers(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                      const char *key)
{
    if (v->kind != CONF_SEQ) {
        return conf_fail(cx, v, key, "expected a list of \"host:port:weight [name]\"");
    }
    if (v->n == 0) {
        return conf_fail(cx, v, key, "the list is empty");
    }
    if (v->n > CONF_MAX_SERVERS) {
        return conf_fail(cx, v, key, "more than %d servers", CONF_MAX_SERVERS);
    }
    p->servers = calloc(v->n, sizeof(*p->servers));
    if (p->servers == NULL) {
        return conf_fail(cx, v, key, "out of memory");
    }
    for (size_t i = 0; i < v->n; i++) {
        const struct conf_node *it = v->items[i];
        char buf[256];
        const char *why;
        if (conf_want_scalar(cx, it, key) == -1) {
            return -1;
        }
        if (conf_value_server(it->value, &p->servers[i], buf, sizeof(buf), &why) == -1) {
            return conf_fail(cx, it, key, "'%s': %s", it->value, why);
        }
        p->servers[i].line = it->line;
        p->nservers = i + 1;
        /* The identity (name, or host:port) places keys: it must be unique. */
        for (size_t j = 0; j < i; j++) {
            if (strcmp(p->servers[j].ident, p->servers[i].ident) == 0) {
                return conf_fail(cx, it, key, "server %s '%s' used twice (line %d)",
                                 p->servers[i].name ? "name" : "address",
                                 p->servers[i].ident, p->servers[j].line);
            }
        }
    }
    return 0;
}

/* limits: { args, bulk, request, inline } — bounds on what a client may
 * send in one request. */
static int pk_limits(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                     const char *key)
{
    static const char *const names[] = { "args", "bulk", "request", "inline", NULL };
    static const uint64_t max[] = { 16u * 1024 * 1024, 4ull << 30, 16ull << 30, 1u << 30 };
    uint64_t *slots[] = { &p->limit_args, &p->limit_bulk, &p->limit_request, &p->limit_inline };
    if (v->kind != CONF_MAP) {
        return conf_fail(cx, v, key, "expected a mapping of args, bulk, request, inline");
    }
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        const struct conf_node *k = v->items[i], *val = v->items[i + 1];
        unsigned which;
        const char *why;
        if (conf_value_enum(k->value, names, &which, &why) == -1) {
            return conf_fail(cx, k, key, "unknown limit '%s' (one of: args, bulk, request, "
                             "inline)", k->value);
        }
        if (conf_want_scalar(cx, val, k->value) == -1) {
            return -1;
        }
        int rc = which == 0 ? conf_value_uint(val->value, 1, max[0], slots[0], &why)
                            : conf_value_size(val->value, max[which], slots[which], &why);
        if (rc == -1 || *slots[which] == 0) {
            return conf_fail(cx, val, k->value, "%s, got '%s'", rc == -1 ? why : "must be > 0",
                             val->value);
        }
    }
    return 0;
}

static int pk_forwarded_for(struct conf_ctx *cx, struct conf_pool *p,
                            const struct conf_node *v, const char *key)
{
    return conf_read_bool(cx, v, key, &p->forwarded_for);
}

static int pk_via(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                  const char *key)
{
    return conf_read_bool(cx, v, key, &p->via);
}

static const struct conf_pool_key conf_pool_keys[] = {
    { "listen", P_ANY, pk_listen },
    { "protocol", P_ANY, pk_protocol },
    { "redis", P_ANY, pk_redis },
    { "backlog", P_ANY, pk_backlog },
    { "client_connections", P_ANY, pk_client_connections },
    { "tcpkeepalive", P_ANY, pk_tcpkeepalive },
    { "timeout", P_ANY, pk_timeout },
    { "servers", P_ANY, pk_servers },
    { "balance", P_TCP | P_HTTP, pk_balance },
    { "retries", P_TCP | P_HTTP, pk_retries },
    { "hash", P_SHARD, pk_hash },
    { "hash_tag", P_SHARD, pk_hash_tag },
    { "distribution", P_SHARD, pk_distribution },
    { "preconnect", P_SHARD, pk_preconnect },
    { "server_connections", P_SHARD, pk_server_connections },
    { "auto_eject_hosts", P_SHARD, pk_auto_eject_hosts },
    { "server_retry_timeout", P_SHARD, pk_server_retry_timeout },
    { "server_failure_limit", P_SHARD, pk_server_failure_limit },
    { "redis_auth", P_REDIS, pk_redis_auth },
    { "redis_db", P_REDIS, pk_redis_db },
    { "redis_user", P_REDIS, pk_redis_user },
    { "limits", P_SHARD, pk_limits },
    { "discovery", P_ANY, conf_discovery_read },
    { "health_check", P_ANY, conf_health_read },
    { "split", P_HTTP, conf_http_split },
    { "mirror", P_HTTP, conf_http_mirror },
    { "forwarded_for", P_HTTP, pk_forwarded_for },
    { "via", P_HTTP, pk_via },
    { "max_connections", P_TCP | P_HTTP, pk_max_connections },
    { "max_pending", P_ANY, pk_max_pending },
    { "retry_budget", P_TCP | P_HTTP, pk_retry_budget },
    { "outlier_detection", P_TCP | P_HTTP, pk_outlier },
};

static const struct conf_pool_key *conf_pool_key_find(const char *name)
{
    for (size_t i = 0; i < sizeof(conf_pool_keys) / sizeof(conf_pool_keys[0]); i++) {
        if (strcmp(conf_pool_keys[i].name, name) == 0) {
            return &conf_pool_keys[i];
        }
    }
    return NULL;
}

static void conf_pool_defaults(struct conf_pool *p)
{
    p->proto = CONF_PROTO_MEMCACHE; /* twemproxy's default */
    p->backlog = 512;
    p->timeout_connect = 1000;
    p->balance = CONF_BAL_ROUND_ROBIN;
    p->retries = 2;
    p->hash = CONF_HASH_FNV1A_64;
    p->distribution = CONF_DIST_KETAMA;
    p->server_connections = 1;
    p->server_retry_timeout = 30000;
    p->server_failure_limit = 2;
    p->forwarded_for = true;
    p->via = true;
    p->timeout_header = 10000;
    p->limit_header = 32 * 1024;
    p->limit_line = 8 * 1024;
    conf_health_defaults(&p->health);
    p->retry_budget = true;
    p->retry_percent = 20;
    p->retry_min_per_second = 10;
    p->outlier_failures = 0; /* off unless asked for */
    p->outlier_time = 5000;
    p->outlier_max_time = 300000;
    p->outlier_max_percent = 50;
}

static const char *conf_protos_text(unsigned mask)
{
    if (mask == P_SHARD) {
        return "redis and memcache";
    }
    if (mask == P_REDIS) {
        return "redis";
    }
    if (mask == P_HTTP) {
        return "http";
    }
    return "tcp and http";
}

static int conf_read_pool(struct conf_ctx *cx, const struct conf_node *name,
                          const struct conf_node *body, struct conf_pool *p)
{
    conf_pool_defaults(p);
    p->name = strdup(name->value);
    p->line = name->line;
    if (p->name == NULL) {
        return conf_fail(cx, name, NULL, "out of memory");
    }
    cx->pool = p->name;
    if (body->kind != CONF_MAP) {
        return conf_fail(cx, body, NULL, "a pool must be a mapping of keys, got %s",
                         conf_kind_name(body));
    }
    /* The protocol decides which keys apply and what `timeout: N` means,
     * so read it first. */
    const struct conf_node *proto = conf_tree_get(body, "protocol");
    const struct conf_node *redis = conf_tree_get(body, "redis");
    if (proto != NULL && redis != NULL) {
        return conf_fail(cx, redis, "redis", "give either 'protocol' or 'redis', not both");
    }
    if ((proto && pk_protocol(cx, p, proto, "protocol") == -1) ||
        (redis && pk_redis(cx, p, redis, "redis") == -1)) {
        return -1;
    }
    unsigned mine = 1u << p->proto;
    for (size_t i = 0; i + 1 < body->n; i += 2) {
        const struct conf_node *k = body->items[i];
        const struct conf_pool_key *key = conf_pool_key_find(k->value);
        if (key == NULL) {
            return conf_fail(cx, k, k->value, "unknown key");
        }
        if ((key->protos & mine) == 0) {
            return conf_fail(cx, k, k->value, "applies only to %s pools, this pool is %s",
                             conf_protos_text(key->protos), conf_proto_name(p->proto));
        }
        if (key->read(cx, p, body->items[i + 1], k->value) == -1) {
            return -1;
        }
    }
    if (p->listen_spec == NULL) {
        return conf_fail(cx, name, "listen", "missing (every pool needs a listen address)");
    }
    if (p->proto == CONF_PROTO_HTTP) {
        if (conf_http_finish(cx, p, name) == -1) {
            return -1;
        }
    } else if (p->nservers == 0 && p->ndisc == 0) {
        return conf_fail(cx, name, "servers", "missing (every pool needs servers or discovery)");
    }
    if (conf_health_finish(cx, p, name) == -1) {
        return -1;
    }
    conf_discovery_finish(p);
    if (p->redis_user != NULL && p->redis_auth == NULL) {
        return conf_fail(cx, conf_tree_get(body, "redis_user"), "redis_user",
                         "needs redis_auth (the password)");
    }
    if (((1u << p->proto) & P_IMPLEMENTED) == 0) {
        return conf_fail(cx, proto ? proto : redis ? redis : name, "protocol",
                         "%s pools are not implemented yet in this version of legate%s",
                         conf_proto_name(p->proto),
                         proto || redis ? "" : " (no protocol given: twemproxy's default is memcache)");
    }
    cx->pool = NULL;
    return 0;
}

/* ---- the legate: section ---- */

/* `admin: host:port` (TCP only: probes and scrapers speak TCP). */
static int conf_read_admin(struct conf_ctx *cx, const struct conf_node *v, struct conf *cf)
{
    if (conf_want_scalar(cx, v, "admin") == -1) {
        return -1;
    }
    char why[256];
    if (net_addr_parse(v->value, &cf->admin, why, sizeof(why)) == -1) {
        return conf_fail(cx, v, "admin", "%s", why);
    }
    if (cf->admin.family == AF_UNIX) {
        return conf_fail(cx, v, "admin", "expected host:port or [ipv6]:port, got a unix path");
    }
    cf->has_admin = true;
    return 0;
}

/* Settle `scheduling: auto` and an unset `priority` from the pools (see
 * conf.h). Measured on two cores shared with the backends and the load:
 * key-sharding pools ran 4-14% more requests at -P 1 under `normal` at 0
 * than under `batch` at -5 (bench/redis), http 9% fewer (wrk). */
static void conf_resolve_scheduling(struct conf *cf)
{
    if (cf->scheduling == CONF_SCHED_AUTO) {
        cf->scheduling = CONF_SCHED_NORMAL;
        for (size_t i = 0; i < cf->npools; i++) {
            enum conf_proto p = cf->pools[i].proto;
            if (p == CONF_PROTO_HTTP || p == CONF_PROTO_TCP) {
                cf->scheduling = CONF_SCHED_BATCH;
                break;
            }
        }
    }
    if (cf->priority == CONF_PRIORITY_UNSET) {
        cf->priority = cf->scheduling == CONF_SCHED_BATCH ? CONF_PRIORITY_BATCH : 0;
    }
}

static int conf_read_process(struct conf_ctx *cx, const struct conf_node *v, struct conf *cf)
{
    static const char *const keys[] = { "workers", "shutdown_grace", "scheduling", "priority",
                                        "watch_config", "admin", NULL };
    static const char *const policies[] = { "batch", "normal", "auto", NULL };
    if (v->kind != CONF_MAP) {
        return conf_fail(cx, v, "legate", "expected a mapping, got %s", conf_kind_name(v));
    }
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        const struct conf_node *k = v->items[i], *val = v->items[i + 1];
        unsigned which;
        const char *why;
        if (conf_value_enum(k->value, keys, &which, &why) == -1) {
            return conf_fail(cx, k, k->value, "unknown key in the legate section");
        }
        int rc = 0;
        switch (which) {
        case 0:
            rc = conf_read_unsigned(cx, val, k->value, 1, CONF_MAX_WORKERS, &cf->workers);
            break;
        case 1:
            rc = conf_read_duration(cx, val, k->value, &cf->shutdown_grace);
            break;
        case 2:
            rc = conf_read_enum(cx, val, k->value, policies, &cf->scheduling);
            break;
        case 3:
            rc = conf_read_int(cx, val, k->value, CONF_NICE_MIN, CONF_NICE_MAX, &cf->priority);
            break;
        case 4:
            rc = conf_read_duration(cx, val, k->value, &cf->watch_config);
            if (rc == 0 && cf->watch_config != 0 && cf->watch_config < CONF_WATCH_MIN_MS) {
                rc = conf_fail(cx, val, k->value, "expected 0 (off) or at least %dms",
                               CONF_WATCH_MIN_MS);
            }
            break;
        default:
            rc = conf_read_admin(cx, val, cf);
            break;
        }
        if (rc == -1) {
            return -1;
        }
    }
    return 0;
}

static int conf_check_listeners(struct conf_ctx *cx, const struct conf *cf,
                                const struct conf_node *root)
{
    for (size_t i = 0; cf->has_admin && i < cf->npools; i++) {
        if (net_addr_equal(&cf->admin, &cf->pools[i].listen)) {
            return conf_fail(cx, conf_tree_get(conf_tree_get(root, "legate"), "admin"), "admin",
                             "address already used by pool '%s'", cf->pools[i].name);
        }
    }
    for (size_t i = 0; i < cf->npools; i++) {
        for (size_t j = 0; j < i; j++) {
            const struct net_addr *a = &cf->pools[i].listen, *b = &cf->pools[j].listen;
            if (net_addr_equal(a, b)) {
                const struct conf_node *n = conf_tree_get(conf_tree_get(root, cf->pools[i].name),
                                                          "listen");
                cx->pool = cf->pools[i].name;
                return conf_fail(cx, n, "listen", "address already used by pool '%s'",
                                 cf->pools[j].name);
            }
        }
    }
    return 0;
}

static void conf_free(struct conf *cf)
{
    if (cf == NULL) {
        return;
    }
    for (size_t i = 0; i < cf->npools; i++) {
        struct conf_pool *p = &cf->pools[i];
        for (size_t j = 0; j < p->nservers; j++) {
            conf_server_clear(&p->servers[j]);
        }
        free(p->servers);
        free(p->name);
        free(p->listen_spec);
        free(p->redis_auth);
        free(p->redis_user);
        conf_http_free(p);
        conf_health_free(p);
        conf_discovery_free(p);
    }
    free(cf->pools);
    free(cf->path);
    free(cf);
}

int conf_load_buffer(const char *name, const char *data, size_t len,
                     struct conf **out, char *err, size_t errlen)
{
    struct conf_ctx cx = { .file = name, .err = err, .errlen = errlen };
    struct conf_node *root;
    *out = NULL;
    if (conf_tree_parse(name, data, len, &root, err, errlen) == -1) {
        return -1;
    }
    struct conf *cf = calloc(1, sizeof(*cf));
    int rc = -1;
    if (cf == NULL || (cf->path = strdup(name)) == NULL) {
        conf_fail(&cx, NULL, NULL, "out of memory");
        goto done;
    }
    atomic_init(&cf->refs, 1);
    cf->shutdown_grace = 10000;
    cf->scheduling = CONF_SCHED_AUTO;
    cf->priority = CONF_PRIORITY_UNSET;
    if (root->kind != CONF_MAP) {
        conf_fail(&cx, root, NULL, "expected a mapping of pool names, got %s",
                  conf_kind_name(root));
        goto done;
    }
    size_t npools = root->n / 2;
    const struct conf_node *process = conf_tree_get(root, "legate");
    if (process != NULL) {
        npools--;
        if (conf_read_process(&cx, process, cf) == -1) {
            goto done;
        }
    }
    if (npools == 0) {
        conf_fail(&cx, root, NULL, "no pools defined");
        goto done;
    }
    cf->pools = calloc(npools, sizeof(*cf->pools));
    if (cf->pools == NULL) {
        conf_fail(&cx, root, NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i + 1 < root->n; i += 2) {
        if (strcmp(root->items[i]->value, "legate") == 0) {
            continue;
        }
        cf->npools++;
        if (conf_read_pool(&cx, root->items[i], root->items[i + 1],
                           &cf->pools[cf->npools - 1]) == -1) {
            goto done;
        }
    }
    if (conf_check_listeners(&cx, cf, root) == -1) {
        goto done;
    }
    conf_resolve_scheduling(cf);
    rc = 0;
done:
    conf_tree_free(root);
    if (rc == -1) {
        conf_free(cf);
        return -1;
    }
    *out = cf;
    return 0;
}

struct conf *conf_get(struct conf *cf)
{
    atomic_fetch_add(&cf->refs, 1);
    return cf;
}

void conf_put(struct conf *cf)
{
    if (cf != NULL && atomic_fetch_sub(&cf->refs, 1) == 1) {
        conf_free(cf);
    }
}
