/* health_probe: requests and verdicts of each check kind (see health_probe.h). */
#include "health_probe.h"
#include "../core/net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the first CRLF-terminated line of in[0, n), or -1 if it is not
 * complete yet. */
static long probe_line(const char *in, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (in[i] == '\r' && in[i + 1] == '\n') {
            return (long)i;
        }
    }
    return -1;
}

static int probe_dup(const char *text, char **out, size_t *len)
{
    *len = strlen(text);
    *out = strdup(text);
    return *out == NULL ? -1 : 0;
}

static int probe_redis_request(const struct conf_pool *cp, const struct conf_server *s,
                               char **out, size_t *len)
{
    (void)s;
    static const char ping[] = "*1\r\n$4\r\nPING\r\n";
    if (cp->redis_auth == NULL) {
        return probe_dup(ping, out, len);
    }
    const char *user = cp->redis_user;
    size_t cap = strlen(cp->redis_auth) + (user ? strlen(user) : 0) + sizeof(ping) + 96;
    char *buf = malloc(cap);
    if (buf == NULL) {
        return -1;
    }
    int n = user != NULL
        ? snprintf(buf, cap, "*3\r\n$4\r\nAUTH\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n%s", strlen(user),
                   user, strlen(cp->redis_auth), cp->redis_auth, ping)
        : snprintf(buf, cap, "*2\r\n$4\r\nAUTH\r\n$%zu\r\n%s\r\n%s", strlen(cp->redis_auth),
                   cp->redis_auth, ping);
    *out = buf;
    *len = (size_t)n;
    return 0;
}

/* Every reply a simple "+..." line; the last (PING's) must be +PONG. */
static enum health_verdict probe_redis_judge(const struct conf_pool *cp, const char *in,
                                             size_t n, const char **why)
{
    unsigned want = cp->redis_auth != NULL ? 2 : 1;
    size_t at = 0;
    for (unsigned k = 0; k < want; k++) {
        long l = probe_line(in + at, n - at);
        if (l < 0) {
            return HEALTH_MORE;
        }
        if (in[at] == '-') {
            *why = "error reply";
            return HEALTH_FAIL;
        }
        if (k + 1 == want) {
            bool pong = l == 5 && memcmp(in + at, "+PONG", 5) == 0;
            *why = "unexpected reply to PING";
            return pong ? HEALTH_PASS : HEALTH_FAIL;
        }
        at += (size_t)l + 2;
    }
    return HEALTH_MORE;
}

static int probe_memcache_request(const struct conf_pool *cp, const struct conf_server *s,
                                  char **out, size_t *len)
{
    (void)cp;
    (void)s;
    return probe_dup("version\r\n", out, len);
}

static enum health_verdict probe_memcache_judge(const struct conf_pool *cp, const char *in,
                                                size_t n, const char **why)
{
    (void)cp;
    long l = probe_line(in, n);
    if (l < 0) {
        return HEALTH_MORE;
    }
    *why = "unexpected reply to version";
    return l > 8 && memcmp(in, "VERSION ", 8) == 0 ? HEALTH_PASS : HEALTH_FAIL;
}

static int probe_http_request(const struct conf_pool *cp, const struct conf_server *s,
                              char **out, size_t *len)
{
    char host[NET_ADDR_STRLEN];
    net_addr_str(&s->addr, host, sizeof(host));
    size_t cap = strlen(cp->health.path) + strlen(host) + 128;
    char *buf = malloc(cap);
    if (buf == NULL) {
        return -1;
    }
    int n = snprintf(buf, cap, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: legate-health\r\n"
                     "Connection: close\r\n\r\n", cp->health.path, host);
    *out = buf;
    *len = (size_t)n;
    return 0;
}

/* "HTTP/1.x NNN ..." with NNN in 200..399. */
static enum health_verdict probe_http_judge(const struct conf_pool *cp, const char *in,
                                            size_t n, const char **why)
{
    (void)cp;
    long l = probe_line(in, n);
    if (l < 0) {
        return HEALTH_MORE;
    }
    *why = "not an HTTP/1.x status line";
    if (l < 12 || memcmp(in, "HTTP/1.", 7) != 0 || in[8] != ' ') {
        return HEALTH_FAIL;
    }
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (in[i] < '0' || in[i] > '9') {
            return HEALTH_FAIL;
        }
        status = status * 10 + (in[i] - '0');
    }
    *why = "status outside 2xx/3xx";
    return status >= 200 && status < 400 ? HEALTH_PASS : HEALTH_FAIL;
}

struct health_kind {
    int (*request)(const struct conf_pool *cp, const struct conf_server *s, char **out,
                   size_t *len);
    enum health_verdict (*judge)(const struct conf_pool *cp, const char *in, size_t n,
                                 const char **why);
};

/* By enum conf_check; tcp sends nothing and passes on connect. */
static const struct health_kind health_kinds[] = {
    [CONF_CHECK_NONE] = { NULL, NULL },
    [CONF_CHECK_TCP] = { NULL, NULL },
    [CONF_CHECK_REDIS] = { probe_redis_request, probe_redis_judge },
    [CONF_CHECK_MEMCACHE] = { probe_memcache_request, probe_memcache_judge },
    [CONF_CHECK_HTTP] = { probe_http_request, probe_http_judge },
};

int health_probe_request(const struct conf_pool *cp, const struct conf_server *server,
                         char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    const struct health_kind *k = &health_kinds[cp->health.kind];
    return k->request == NULL ? 0 : k->request(cp, server, out, len);
}

enum health_verdict health_probe_judge(const struct conf_pool *cp, const char *in, size_t n,
                                       bool eof, const char **why)
{
    const struct health_kind *k = &health_kinds[cp->health.kind];
    if (k->judge == NULL) {
        return HEALTH_PASS;
    }
    enum health_verdict v = k->judge(cp, in, n, why);
    if (v == HEALTH_MORE && eof) {
        *why = n == 0 ? "closed without answering" : "closed in the middle of its answer";
        return HEALTH_FAIL;
    }
    return v;
}
