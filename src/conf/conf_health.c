/* conf_health: the health_check: key of a pool —
 *   health_check: { kind: tcp | redis | memcache | http, interval: 2s,
 *                   timeout: 1s, rise: 2, fall: 3, path: /,
 *                   max_ejected_percent: 50 }
 * Every key is optional; `kind` defaults to the pool's protocol (tcp for
 * tcp pools). `health_check: true` takes every default. */
#include "conf_int.h"
#include "conf_value.h"

#include <stdlib.h>
#include <string.h>

enum { HEALTH_MAX_MS = 3600 * 1000, HEALTH_MAX_STREAK = 100, HEALTH_PATH_MAX = 1024 };

static const char *const conf_check_names[] = { "none", "tcp", "redis", "memcache", "http", NULL };

const char *conf_check_name(enum conf_check c)
{
    return conf_check_names[c];
}

/* One key of the map: reads into h, or fails with the reason. */
typedef int (*conf_health_key_fn)(struct conf_ctx *cx, struct conf_health *h,
                                  const struct conf_node *v, const char *key);

static int hk_kind(struct conf_ctx *cx, struct conf_health *h, const struct conf_node *v,
                   const char *key)
{
    unsigned k;
    if (conf_read_enum(cx, v, key, conf_check_names + 1, &k) == -1) {
        return -1;
    }
    h->kind = (enum conf_check)(k + 1);
    return 0;
}

static int hk_ms(struct conf_ctx *cx, const struct conf_node *v, const char *key, uint64_t *out)
{
    if (conf_read_duration(cx, v, key, out) == -1) {
        return -1;
    }
    if (*out == 0 || *out > HEALTH_MAX_MS) {
        return conf_fail(cx, v, key, "must be between 1ms and 1h, got '%s'", v->value);
    }
    return 0;
}

static int hk_interval(struct conf_ctx *cx, struct conf_health *h, const struct conf_node *v,
                       const char *key)
{
    return hk_ms(cx, v, key, &h->interval);
}

static int hk_timeout(struct conf_ctx *cx, struct conf_health *h, const struct conf_node *v,
                      const char *key)
{
    return hk_ms(cx, v, key, &h->timeout);
}

static int hk_rise(struct conf_ctx *cx, struct conf_health *h, const struct conf_node *v,
                   const char *key)
{
    return conf_read_unsigned(cx, v, key, 1, HEALTH_MAX_STREAK, &h->rise);
}

static int hk_fall(struct conf_ctx *cx, struct conf_health *h, const struct conf_node *v,
                   const char *key)
{
    return conf_read_unsigned(cx, v, key, 1, HEALTH_MAX_STREAK, &h->fall);
}

static int hk_max_ejected(struct conf_ctx *cx, struct conf_health *h, const struct conf_node *v,
                          const char *key)
{
    return conf_read_unsigned(cx, v, key, 0, 100, &h->max_ejected_percent);
}

static int hk_path(struct conf_ctx *cx, struct conf_health *h, const struct conf_node *v,
                   const char *key)
{
    if (conf_want_scalar(cx, v, key) == -1) {
        return -1;
    }
    size_t n = strlen(v->value);
    if (n == 0 || n > HEALTH_PATH_MAX || v->value[0] != '/') {
        return conf_fail(cx, v, key, "expected a path starting with '/' (at most %d bytes)",
                         HEALTH_PATH_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v->value[i];
        if (c <= ' ' || c == 0x7f) {
            return conf_fail(cx, v, key, "no spaces or control characters in a path");
        }
    }
    free(h->path);
    h->path = strdup(v->value);
    return h->path == NULL ? conf_fail(cx, v, key, "out of memory") : 0;
}

static const struct {
    const char *name;
    conf_health_key_fn read;
} conf_health_keys[] = {
    { "kind", hk_kind },         { "interval", hk_interval }, { "timeout", hk_timeout },
    { "rise", hk_rise },         { "fall", hk_fall },         { "path", hk_path },
    { "max_ejected_percent", hk_max_ejected },
};

int conf_health_read(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                     const char *key)
{
    struct conf_health *h = &p->health;
    h->line = v->line;
    h->configured = true;
    if (v->kind == CONF_SCALAR) {
        bool on;
        if (conf_read_bool(cx, v, key, &on) == -1) {
            return -1;
        }
        h->configured = on;
        return 0;
    }
    if (v->kind != CONF_MAP) {
        return conf_fail(cx, v, key, "expected { kind, interval, timeout, rise, fall, path, "
                         "max_ejected_percent } or true");
    }
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        const char *k = v->items[i]->value;
        size_t j = 0;
        size_t nkeys = sizeof(conf_health_keys) / sizeof(conf_health_keys[0]);
        while (j < nkeys && strcmp(conf_health_keys[j].name, k) != 0) {
            j++;
        }
        if (j == nkeys) {
            return conf_fail(cx, v->items[i], key, "unknown key '%s' (kind, interval, timeout, "
                             "rise, fall, path, max_ejected_percent)", k);
        }
        if (conf_health_keys[j].read(cx, h, v->items[i + 1], k) == -1) {
            return -1;
        }
    }
    return 0;
}

/* The check a pool gets by default: its own protocol's. */
static const enum conf_check conf_health_default_kind[] = {
    [CONF_PROTO_TCP] = CONF_CHECK_TCP,
    [CONF_PROTO_REDIS] = CONF_CHECK_REDIS,
    [CONF_PROTO_MEMCACHE] = CONF_CHECK_MEMCACHE,
    [CONF_PROTO_HTTP] = CONF_CHECK_HTTP,
};

int conf_health_finish(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *name)
{
    struct conf_health *h = &p->health;
    if (!h->configured) {
        h->kind = CONF_CHECK_NONE;
        return 0;
    }
    if (h->kind == CONF_CHECK_NONE) {
        h->kind = conf_health_default_kind[p->proto];
    }
    if (h->path != NULL && h->kind != CONF_CHECK_HTTP) {
        return conf_fail(cx, name, "health_check", "path applies only to kind: http");
    }
    if (h->kind == CONF_CHECK_HTTP && h->path == NULL && (h->path = strdup("/")) == NULL) {
        return conf_fail(cx, name, "health_check", "out of memory");
    }
    return 0;
}

void conf_health_defaults(struct conf_health *h)
{
    h->kind = CONF_CHECK_NONE;
    h->interval = 2000;
    h->timeout = 1000;
    h->rise = 2;
    h->fall = 3;
    h->max_ejected_percent = 50;
}

void conf_health_free(struct conf_pool *p)
{
    free(p->health.path);
    p->health.path = NULL;
}
