/* conf_int: what the config readers share (conf.c and the per-protocol
 * key files): the error context and typed readers that turn a node into a
 * value or a "file:line:col: pool: key: reason" error. Not for use outside
 * src/conf. */
#ifndef LEGATE_CONF_INT_H
#define LEGATE_CONF_INT_H

#include "conf.h"
#include "conf_tree.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conf_ctx {
    const char *file;
    const char *pool; /* pool being read, or NULL */
    char *err;
    size_t errlen;
};

/* Format "file:line:col: [pool 'p': ][key 'k': ]msg" into the error;
 * returns -1 so callers can `return conf_fail(...)`. */
int conf_fail(struct conf_ctx *cx, const struct conf_node *n, const char *key,
              const char *fmt, ...) __attribute__((format(printf, 4, 5)));

const char *conf_kind_name(const struct conf_node *n);
int conf_want_scalar(struct conf_ctx *cx, const struct conf_node *v, const char *key);

/* Typed readers: 0, or -1 with the error formatted. */
int conf_read_uint(struct conf_ctx *cx, const struct conf_node *v, const char *key,
                   uint64_t min, uint64_t max, uint64_t *out);
int conf_read_int(struct conf_ctx *cx, const struct conf_node *v, const char *key,
                  int min, int max, int *out);
int conf_read_unsigned(struct conf_ctx *cx, const struct conf_node *v, const char *key,
                       unsigned min, unsigned max, unsigned *out);
int conf_read_bool(struct conf_ctx *cx, const struct conf_node *v, const char *key, bool *out);
int conf_read_duration(struct conf_ctx *cx, const struct conf_node *v, const char *key,
                       uint64_t *out);
int conf_read_enum(struct conf_ctx *cx, const struct conf_node *v, const char *key,
                   const char *const *names, unsigned *out);

/* http keys (conf_http.c). */
int conf_http_split(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                    const char *key);
int conf_http_mirror(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                     const char *key);
/* After every key is read: the default arm of a plain pool, checks. */
int conf_http_finish(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *name);
void conf_http_free(struct conf_pool *p);

/* discovery: (conf_discovery.c). */
int conf_discovery_read(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                        const char *key);
/* A discovery map for `owner` (an arm's index, CONF_DISC_MIRROR). */
int conf_discovery_add(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                       const char *key, int owner);
/* After every key: each discovery's first slot. */
void conf_discovery_finish(struct conf_pool *p);
void conf_discovery_free(struct conf_pool *p);

/* health_check: (conf_health.c). */
int conf_health_read(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                     const char *key);
/* After every key is read: the default kind (the pool's protocol), checks. */
int conf_health_finish(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *name);
void conf_health_defaults(struct conf_health *h);
void conf_health_free(struct conf_pool *p);

#endif
