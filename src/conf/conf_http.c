/* conf_http: the keys of http pools — split (sticky, override_header,
 * response_header, arms) and mirror — and the final assembly: every arm's
 * servers, then the mirror's, are appended to the pool's server list so
 * stats and balancing see one list, each arm a slice of it. */
#include "conf_int.h"
#include "conf_value.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CONF_MAX_ARMS = 64, CONF_NAME_MAX = 128 };

/* A header, cookie or arm name: 1..128 visible characters, no separators
 * that would break a header line. */
static int conf_http_token(struct conf_ctx *cx, const struct conf_node *v, const char *key,
                           char **out)
{
    if (conf_want_scalar(cx, v, key) == -1) {
        return -1;
    }
    size_t n = strlen(v->value);
    if (n == 0 || n > CONF_NAME_MAX || strpbrk(v->value, " \t\r\n:;,=\"") != NULL) {
        return conf_fail(cx, v, key, "expected a name of 1 to %d characters without spaces "
                         "or separators, got '%s'", CONF_NAME_MAX, v->value);
    }
    free(*out);
    *out = strdup(v->value);
    return *out ? 0 : conf_fail(cx, v, key, "out of memory");
}

/* A list of server lines into a new array. */
static int conf_http_servers(struct conf_ctx *cx, const struct conf_node *v, const char *key,
                             struct conf_server **out, size_t *n)
{
    if (v->kind != CONF_SEQ || v->n == 0) {
        return conf_fail(cx, v, key, "expected a non-empty list of \"host:port[:weight]\"");
    }
    if (v->n > CONF_MAX_SERVERS) {
        return conf_fail(cx, v, key, "more than %d servers", CONF_MAX_SERVERS);
    }
    *out = calloc(v->n, sizeof(**out));
    if (*out == NULL) {
        return conf_fail(cx, v, key, "out of memory");
    }
    for (size_t i = 0; i < v->n; i++) {
        char buf[256];
        const char *why;
        if (conf_want_scalar(cx, v->items[i], key) == -1) {
            return -1;
        }
        if (conf_value_server(v->items[i]->value, &(*out)[i], buf, sizeof(buf), &why) == -1) {
            return conf_fail(cx, v->items[i], key, "'%s': %s", v->items[i]->value, why);
        }
        (*out)[i].line = v->items[i]->line;
        *n = i + 1;
    }
    return 0;
}

/* sticky: { header: NAME } | { cookie: NAME } | { client_address: true } */
static int conf_http_sticky(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v)
{
    static const char *const kinds[] = { "header", "cookie", "client_address", NULL };
    if (v->kind != CONF_MAP || v->n != 2) {
        return conf_fail(cx, v, "sticky", "expected one of { header: NAME }, { cookie: NAME }, "
                         "{ client_address: true }");
    }
    unsigned which;
    if (conf_read_enum(cx, v->items[0], "sticky", kinds, &which) == -1) {
        return -1;
    }
    if (which == 2) {
        bool on;
        if (conf_read_bool(cx, v->items[1], "client_address", &on) == -1) {
            return -1;
        }
        p->sticky = on ? CONF_STICKY_ADDR : CONF_STICKY_NONE;
        return 0;
    }
    p->sticky = which == 0 ? CONF_STICKY_HEADER : CONF_STICKY_COOKIE;
    return conf_http_token(cx, v->items[1], kinds[which], &p->sticky_name);
}

/* One arm: NAME: { weight: N, servers: [...], discovery: {...} } */
static int conf_http_arm(struct conf_ctx *cx, struct conf_pool *p, int index,
                         const struct conf_node *name, const struct conf_node *v)
{
    struct conf_arm *a = &p->arms[index];
    if (conf_http_token(cx, name, "arms", &a->name) == -1) {
        return -1;
    }
    if (strcmp(a->name, "mirror") == 0) {
        /* The stats name the mirror's servers "mirror/ADDR" beside the
         * arms' "ARM/ADDR": an arm of that name could collide with it. */
        return conf_fail(cx, name, "arms", "the arm name 'mirror' is reserved for the "
                         "mirror's stats; choose another");
    }
    a->line = name->line;
    a->weight = 1;
    if (v->kind != CONF_MAP) {
        return conf_fail(cx, v, a->name, "expected { weight: N, servers: [...] }");
    }
    bool have_servers = false;
    bool have_discovery = false;
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        const char *k = v->items[i]->value;
        const struct conf_node *val = v->items[i + 1];
        if (strcmp(k, "weight") == 0) {
            if (conf_read_unsigned(cx, val, k, 0, CONF_MAX_WEIGHT, &a->weight) == -1) {
                return -1;
            }
        } else if (strcmp(k, "servers") == 0) {
            if (conf_http_servers(cx, val, k, &a->staged, &a->n) == -1) {
                return -1;
            }
            have_servers = true;
        } else if (strcmp(k, "discovery") == 0) {
            if (conf_discovery_add(cx, p, val, k, index) == -1) {
                return -1;
            }
            have_discovery = true;
        } else {
            return conf_fail(cx, v->items[i], k, "unknown key in arm '%s' (weight, servers, "
                             "discovery)", a->name);
        }
    }
    if (!have_servers && !have_discovery) {
        return conf_fail(cx, name, "servers", "arm '%s' has no servers (nor discovery)",
                         a->name);
    }
    return 0;
}

static int conf_http_arms(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v)
{
    if (v->kind != CONF_MAP || v->n == 0) {
        return conf_fail(cx, v, "arms", "expected a mapping of arm names to "
                         "{ weight, servers }");
    }
    if (v->n / 2 > CONF_MAX_ARMS) {
        return conf_fail(cx, v, "arms", "more than %d arms", CONF_MAX_ARMS);
    }
    p->arms = calloc(v->n / 2, sizeof(*p->arms));
    if (p->arms == NULL) {
        return conf_fail(cx, v, "arms", "out of memory");
    }
    unsigned total = 0;
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        int index = (int)p->narms++;
        if (conf_http_arm(cx, p, index, v->items[i], v->items[i + 1]) == -1) {
            return -1;
        }
        total += p->arms[index].weight;
    }
    if (total == 0) {
        return conf_fail(cx, v, "arms", "every arm has weight 0: no request could be placed");
    }
    return 0;
}

int conf_http_split(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                    const char *key)
{
    if (v->kind != CONF_MAP) {
        return conf_fail(cx, v, key, "expected a mapping of sticky, override_header, "
                         "response_header, arms");
    }
    p->split = true;
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        const char *k = v->items[i]->value;
        const struct conf_node *val = v->items[i + 1];
        int rc;
        if (strcmp(k, "sticky") == 0) {
            rc = conf_http_sticky(cx, p, val);
        } else if (strcmp(k, "override_header") == 0) {
            rc = conf_http_token(cx, val, k, &p->override_header);
        } else if (strcmp(k, "response_header") == 0) {
            rc = conf_http_token(cx, val, k, &p->arm_header);
        } else if (strcmp(k, "arms") == 0) {
            rc = conf_http_arms(cx, p, val);
        } else {
            rc = conf_fail(cx, v->items[i], k, "unknown key in split (sticky, override_header, "
                           "response_header, arms)");
        }
        if (rc == -1) {
            return -1;
        }
    }
    if (p->narms == 0) {
        return conf_fail(cx, v, key, "no arms");
    }
    return 0;
}

int conf_http_mirror(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *v,
                     const char *key)
{
    if (v->kind != CONF_MAP) {
        return conf_fail(cx, v, key, "expected { percent: N, servers: [...] }");
    }
    bool have_servers = false;
    p->mirror_percent = 100;
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        const char *k = v->items[i]->value;
        const struct conf_node *val = v->items[i + 1];
        if (strcmp(k, "percent") == 0) {
            if (conf_read_unsigned(cx, val, k, 0, 100, &p->mirror_percent) == -1) {
                return -1;
            }
        } else if (strcmp(k, "servers") == 0) {
            if (conf_http_servers(cx, val, k, &p->mirror_staged, &p->mirror_n) == -1) {
                return -1;
            }
            have_servers = true;
        } else if (strcmp(k, "discovery") == 0) {
            if (conf_discovery_add(cx, p, val, k, CONF_DISC_MIRROR) == -1) {
                return -1;
            }
            have_servers = true;
        } else {
            return conf_fail(cx, v->items[i], k, "unknown key in mirror (percent, servers, "
                             "discovery)");
        }
    }
    if (!have_servers) {
        return conf_fail(cx, v, key, "the mirror has no servers");
    }
    return 0;
}

/* Move `n` staged servers to the end of the pool's list. */
static int conf_http_append(struct conf_pool *p, struct conf_server **staged, size_t n,
                            size_t *first)
{
    struct conf_server *all = realloc(p->servers, (p->nservers + n) * sizeof(*all));
    if (all == NULL) {
        return -1;
    }
    p->servers = all;
    memcpy(&all[p->nservers], *staged, n * sizeof(*all));
    *first = p->nservers;
    p->nservers += n;
    free(*staged); /* the strings now belong to the pool's list */
    *staged = NULL;
    return 0;
}

int conf_http_finish(struct conf_ctx *cx, struct conf_pool *p, const struct conf_node *name)
{
    if (p->split && p->nservers > 0) {
        return conf_fail(cx, name, "servers", "a split pool takes its servers from "
                         "split.arms; remove the pool's servers list");
    }
    if (p->split && conf_pool_discovery(p, CONF_DISC_POOL) != NULL) {
        return conf_fail(cx, name, "discovery", "a split pool finds servers per arm: put "
                         "discovery in split.arms.NAME");
    }
    if (!p->split) {
        if (p->nservers == 0 && conf_pool_discovery(p, CONF_DISC_POOL) == NULL) {
            return conf_fail(cx, name, "servers", "missing (every pool needs servers or "
                             "discovery)");
        }
        p->arms = calloc(1, sizeof(*p->arms));
        if (p->arms == NULL || (p->arms[0].name = strdup("default")) == NULL) {
            return conf_fail(cx, name, NULL, "out of memory");
        }
        p->narms = 1;
        p->arms[0].weight = 1;
        p->arms[0].n = p->nservers;
        p->arms[0].line = name->line;
        if (p->sticky != CONF_STICKY_NONE || p->override_header || p->arm_header) {
            return conf_fail(cx, name, "split", "sticky and override need split.arms");
        }
    }
    for (size_t i = 0; i < p->narms; i++) {
        struct conf_arm *a = &p->arms[i];
        if (a->staged != NULL && conf_http_append(p, &a->staged, a->n, &a->first) == -1) {
            return conf_fail(cx, name, NULL, "out of memory");
        }
    }
    if (p->mirror_staged != NULL &&
        conf_http_append(p, &p->mirror_staged, p->mirror_n, &p->mirror_first) == -1) {
        return conf_fail(cx, name, NULL, "out of memory");
    }
    return 0;
}

void conf_http_free(struct conf_pool *p)
{
    for (size_t i = 0; i < p->narms; i++) {
        struct conf_arm *a = &p->arms[i];
        for (size_t j = 0; a->staged != NULL && j < a->n; j++) {
            conf_server_clear(&a->staged[j]);
        }
        free(a->staged);
        free(a->name);
    }
    free(p->arms);
    for (size_t j = 0; p->mirror_staged != NULL && j < p->mirror_n; j++) {
        conf_server_clear(&p->mirror_staged[j]);
    }
    free(p->mirror_staged);
    free(p->sticky_name);
    free(p->override_header);
    free(p->arm_header);
}
