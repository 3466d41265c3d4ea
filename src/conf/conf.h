/* conf: the whole configuration as one immutable, reference-counted
 * snapshot built from YAML (see DESIGN.md "Config" and docs/config.md).
 *
 * A snapshot is never modified after conf_load returns; workers hold a
 * reference (conf_get) and drop it (conf_put), so a reload can build a new
 * one while the old one is still in use. */
#ifndef LEGATE_CONF_H
#define LEGATE_CONF_H

#include "../core/net.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum conf_proto { CONF_PROTO_TCP, CONF_PROTO_REDIS, CONF_PROTO_MEMCACHE, CONF_PROTO_HTTP };

enum conf_balance {
    CONF_BAL_ROUND_ROBIN,
    CONF_BAL_LEAST_CONN,
    CONF_BAL_RANDOM,
    CONF_BAL_P2C_EWMA,
};

enum conf_dist { CONF_DIST_KETAMA, CONF_DIST_MODULA, CONF_DIST_RANDOM };

enum conf_hash {
    CONF_HASH_ONE_AT_A_TIME,
    CONF_HASH_MD5,
    CONF_HASH_CRC16,
    CONF_HASH_CRC32,
    CONF_HASH_CRC32A,
    CONF_HASH_FNV1_64,
    CONF_HASH_FNV1A_64,
    CONF_HASH_FNV1_32,
    CONF_HASH_FNV1A_32,
    CONF_HASH_HSIEH,
    CONF_HASH_MURMUR,
    CONF_HASH_JENKINS,
};

enum {
    CONF_MAX_WEIGHT = 10000,
    CONF_MAX_WORKERS = 64,
    CONF_MAX_SERVERS = 4096,
    CONF_MAX_RETRIES = 16,
};

struct conf_server {
    char *spec;           /* as written, for logs and stats */
    char *name;           /* optional name; NULL if none */
    char *ident;          /* ketama identity, as twemproxy: the name if given,
                           * else "host:port" as written ("host" alone when the
                           * port is 11211, for libmemcached compatibility) */
    struct net_addr addr;
    unsigned weight;
    int line;
};

/* http: an arm of an experiment — a name, a share, and its servers (a
 * slice of the pool's server list). A plain http pool has one arm. */
struct conf_arm {
    char *name;
    unsigned weight;            /* a proportion; 0 takes no split traffic */
    size_t first;               /* its servers: pool servers[first, first + n) */
    size_t n;
    int line;
    struct conf_server *staged; /* while reading: its own list, merged at the end */
};

/* Active health checks of a pool's servers (health_check:). */
enum conf_check { CONF_CHECK_NONE, CONF_CHECK_TCP, CONF_CHECK_REDIS, CONF_CHECK_MEMCACHE,
                  CONF_CHECK_HTTP };

struct conf_health {
    enum conf_check kind;        /* NONE: no active checks */
    uint64_t interval;           /* ms between checks of one server */
    uint64_t timeout;            /* ms for connect + answer */
    unsigned rise;               /* passes in a row to come back */
    unsigned fall;               /* failures in a row to be taken out */
    unsigned max_ejected_percent; /* never more of the pool out at once (min 1) */
    char *path;                  /* http: the path to GET */
    bool configured;             /* health_check: given (while reading) */
    int line;
};

/* Where a pool finds servers besides its static list (discovery:). */
enum conf_disc { CONF_DISC_NONE, CONF_DISC_DNS, CONF_DISC_SRV, CONF_DISC_FILE };

enum { CONF_DISC_POOL = -1, CONF_DISC_MIRROR = -2 };

struct conf_discovery {
    int owner;                   /* CONF_DISC_POOL, an arm's index, or CONF_DISC_MIRROR */
    size_t first;                /* its servers: slots [first, first + max_endpoints) */
    enum conf_disc kind;
    char *name;                  /* dns: host name; dns_srv: record; file: path */
    uint16_t port;               /* dns: the port of every address */
    char *resolvers;             /* "ip:port,..." (NULL: /etc/resolv.conf) */
    uint64_t interval;           /* ms between lookups (or file checks) */
    unsigned max_endpoints;      /* slots for discovered servers */
    int line;
};

enum conf_sticky { CONF_STICKY_NONE, CONF_STICKY_HEADER, CONF_STICKY_COOKIE, CONF_STICKY_ADDR };

struct conf_pool {
    char *name;
    int line;
    enum conf_proto proto;

    char *listen_spec;
    struct net_addr listen;
    unsigned listen_mode;       /* unix socket permission bits; 0 = umask */
    int backlog;
    uint32_t client_connections; /* 0 = unlimited */
    bool tcpkeepalive;

    /* Timeouts in ms; 0 means none. */
    uint64_t timeout_connect;
    uint64_t timeout_request;
    uint64_t timeout_idle;

    enum conf_balance balance;
    unsigned retries;           /* further servers tried after a failed connect */
    bool retry_budget;          /* retries limited to a share of requests */
    unsigned retry_percent;     /* ... this percentage of them */
    unsigned retry_min_per_second; /* ... plus this many a second (per worker) */
    unsigned max_connections;   /* upstream connections of the pool; 0: no limit */
    /* Passive outlier ejection (tcp, http), per worker: */
    unsigned outlier_failures;  /* consecutive failures that eject; 0: off */
    uint64_t outlier_time;      /* ms of the first ejection (doubles each time) */
    uint64_t outlier_max_time;  /* ms: the longest ejection */
    unsigned outlier_max_percent; /* never more of the pool ejected (min 1) */
    unsigned max_pending;       /* requests (tcp: connects) in flight; 0: no limit */

    /* Sharding keys (redis, memcache), with twemproxy's meaning. */
    enum conf_hash hash;
    char hash_tag[2];
    bool has_hash_tag;
    enum conf_dist distribution;
    bool preconnect;
    unsigned server_connections;
    bool auto_eject_hosts;
    uint64_t server_retry_timeout;
    unsigned server_failure_limit;
    char *redis_auth;
    char *redis_user;           /* legate's: user for two-argument AUTH */
    unsigned redis_db;

    /* Request parser limits (redis): 0 = the protocol's default. */
    uint64_t limit_args;
    uint64_t limit_bulk;
    uint64_t limit_request;
    uint64_t limit_inline;

    /* http (split and mirror servers are appended to `servers`). */
    struct conf_arm *arms;
    size_t narms;
    bool split;                 /* arms came from split: (else one plain arm) */
    enum conf_sticky sticky;
    char *sticky_name;          /* header or cookie name */
    char *override_header;      /* names an arm explicitly; NULL: none */
    char *arm_header;           /* response header telling the arm; NULL: none */
    unsigned mirror_percent;    /* 0: no mirror */
    size_t mirror_first;        /* mirror servers: servers[first, first + n) */
    size_t mirror_n;
    struct conf_server *mirror_staged; /* while reading */
    bool forwarded_for;         /* append the client to X-Forwarded-For */
    bool via;                   /* add "Via: 1.1 legate" */
    uint64_t timeout_header;    /* ms to receive a request head (slowloris) */
    uint64_t limit_header;      /* bytes of a request head (431 above) */
    uint64_t limit_line;        /* bytes of a request line (414 above) */

    struct conf_health health;
    struct conf_discovery *disc; /* every discovery of the pool (its own, its arms',
                                  * its mirror's), in slot order after `servers` */
    size_t ndisc;

    struct conf_server *servers;
    size_t nservers;
};

/* Worker threads' scheduling policy: `batch` (SCHED_BATCH) never preempts
 * another task on wake-up, so a worker meets its events in larger batches;
 * `normal` is the kernel's default policy. `auto` (the default) is resolved
 * when the file is read: `normal` when every pool shards keys (redis,
 * memcache: the shards' batches grow when the worker answers them at
 * once), `batch` when any pool is http or tcp. */
enum { CONF_SCHED_BATCH, CONF_SCHED_NORMAL, CONF_SCHED_AUTO };

/* Worker threads' nice value (`priority`, as nginx's worker_priority).
 * Unset, it follows the policy: -5 under `batch`, so the tasks a worker
 * wakes (its clients, its servers) do not preempt it in the middle of a
 * batch; 0, the kernel's default, under `normal`. */
enum { CONF_NICE_MIN = -20, CONF_NICE_MAX = 19, CONF_PRIORITY_BATCH = -5,
       CONF_PRIORITY_UNSET = CONF_NICE_MIN - 1 };

/* `watch_config`: main reads the config file at this interval and reloads
 * once a new content has held still for one interval (fwatch.h); 0 = off. */
enum { CONF_WATCH_MIN_MS = 100 };

struct conf {
    atomic_uint refs;
    char *path;
    unsigned workers;           /* 0 = number of CPUs */
    uint64_t shutdown_grace;    /* ms */
    unsigned scheduling;        /* CONF_SCHED_*: the workers' scheduling policy */
    int priority;               /* the workers' nice value */
    uint64_t watch_config;      /* ms between checks of the config file; 0 = off */
    bool has_admin;             /* `admin`: the admin HTTP listener's address */
    struct net_addr admin;
    struct conf_pool *pools;
    size_t npools;
};

/* The discovery of `owner` (CONF_DISC_POOL, an arm, CONF_DISC_MIRROR) in
 * pool `cp`, or NULL. */
static inline const struct conf_discovery *conf_pool_discovery(const struct conf_pool *cp,
                                                               int owner)
{
    for (size_t i = 0; i < cp->ndisc; i++) {
        if (cp->disc[i].owner == owner) {
            return &cp->disc[i];
        }
    }
    return NULL;
}

/* Validate a config file's content data[0, len). Returns 0 and a snapshot
 * holding one reference in *out, or -1 with "name:line:column: ..." in err
 * (`name` stands for the file in messages). */
int conf_load_buffer(const char *name, const char *data, size_t len,
                     struct conf **out, char *err, size_t errlen);

/* Take and drop references; the last conf_put frees (NULL-safe). */
struct conf *conf_get(struct conf *cf);
void conf_put(struct conf *cf);

/* Hash and distribution names (twemproxy's). Return 0, or -1 if unknown. */
int conf_hash_parse(const char *s, enum conf_hash *out);
int conf_dist_parse(const char *s, enum conf_dist *out);

/* Names for logs and stats. */
const char *conf_proto_name(enum conf_proto p);
const char *conf_balance_name(enum conf_balance b);
const char *conf_check_name(enum conf_check c);

#endif
