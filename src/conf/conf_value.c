/* conf_value: scalar value parsers (see conf_value.h). */
#include "conf_value.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int conf_digits(const char *s, const char **end, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    if (!isdigit((unsigned char)*p)) {
        return -1;
    }
    while (isdigit((unsigned char)*p)) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
        p++;
    }
    *end = p;
    *out = v;
    return 0;
}

int conf_value_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out,
                    const char **why)
{
    const char *end;
    uint64_t v;
    if (conf_digits(s, &end, &v) == -1 || *end != '\0') {
        *why = "expected a non-negative integer";
        return -1;
    }
    if (v < min || v > max) {
        *why = "value out of range";
        return -1;
    }
    *out = v;
    return 0;
}

int conf_value_size(const char *s, uint64_t max, uint64_t *out, const char **why)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {
        { "", 1 }, { "b", 1 }, { "kb", 1024 }, { "mb", 1024 * 1024 }, { "gb", 1024 * 1024 * 1024 },
    };
    const char *end;
    uint64_t v;
    if (conf_digits(s, &end, &v) == -1) {
        *why = "expected a size (bytes, or e.g. \"64kb\", \"512mb\")";
        return -1;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) == 0) {
            if (v > max / units[i].mult) {
                *why = "size too large";
                return -1;
            }
            *out = v * units[i].mult;
            return 0;
        }
    }
    *why = "unknown size unit (use kb, mb or gb)";
    return -1;
}

int conf_value_bool(const char *s, bool *out, const char **why)
{
    static const char *const yes[] = { "true", "yes", "on", NULL };
    static const char *const no[] = { "false", "no", "off", NULL };
    for (size_t i = 0; yes[i] != NULL; i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    *why = "expected true or false";
    return -1;
}

int conf_value_duration(const char *s, uint64_t *ms, const char **why)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {
        { "", 1 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
    };
    const char *end;
    uint64_t v;
    if (conf_digits(s, &end, &v) == -1) {
        *why = "expected a duration (ms as an integer, or e.g. \"500ms\", \"5s\")";
        return -1;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) == 0) {
            if (v > CONF_MAX_DURATION_MS / units[i].mult) {
                *why = "duration longer than a week";
                return -1;
            }
            *ms = v * units[i].mult;
            return 0;
        }
    }
    *why = "unknown duration unit (use ms, s, m or h)";
    return -1;
}

int conf_value_enum(const char *s, const char *const *names, unsigned *out,
                    const char **why)
{
    for (unsigned i = 0; names[i] != NULL; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    *why = "unknown value";
    return -1;
}

int conf_value_mode(const char *s, unsigned *out, const char **why)
{
    size_t n = strlen(s);
    if (n == 0 || n > 4 || strspn(s, "01234567") != n) {
        *why = "expected octal permission bits such as 0660";
        return -1;
    }
    *out = (unsigned)strtoul(s, NULL, 8);
    return 0;
}

void conf_server_clear(struct conf_server *s)
{
    free(s->spec);
    free(s->name);
    free(s->ident);
    s->spec = NULL;
    s->name = NULL;
    s->ident = NULL;
}

/* twemproxy's ketama identity of an unnamed server (see conf.h). */
static char *conf_server_ident(const char *addr, size_t span)
{
    static const char ketama_port[] = ":11211";
    size_t n = span;
    size_t kp = sizeof(ketama_port) - 1;
    if (addr[0] != '/' && n > kp && memcmp(addr + n - kp, ketama_port, kp) == 0) {
        n -= kp;
    }
    return strndup(addr, n);
}

int conf_value_server(const char *s, struct conf_server *out,
                      char *buf, size_t buflen, const char **why)
{
    memset(out, 0, sizeof(*out));
    size_t sp = strcspn(s, " \t");
    const char *name = s + sp + strspn(s + sp, " \t");
    size_t span = net_addr_span(s);
    if (span == 0 || span > sp) {
        *why = "expected host:port[:weight] [name]";
        return -1;
    }
    char addr[300];
    if (span >= sizeof(addr)) {
        *why = "address too long";
        return -1;
    }
    memcpy(addr, s, span);
    addr[span] = '\0';
    uint64_t weight = 1;
    if (span < sp) {
        if (s[span] != ':') {
            *why = "expected host:port[:weight] [name]";
            return -1;
        }
        char w[32];
        size_t wl = sp - span - 1;
        if (wl == 0 || wl >= sizeof(w)) {
            *why = "bad weight";
            return -1;
        }
        memcpy(w, s + span + 1, wl);
        w[wl] = '\0';
        if (conf_value_uint(w, 1, CONF_MAX_WEIGHT, &weight, why) == -1) {
            *why = "weight must be an integer from 1 to 10000";
            return -1;
        }
    }
    if (net_addr_parse(addr, &out->addr, buf, buflen) == -1) {
        *why = buf;
        return -1;
    }
    if (*name != '\0' && strcspn(name, " \t") != strlen(name)) {
        *why = "a server name is one word";
        return -1;
    }
    out->spec = strndup(s, sp);
    out->name = *name != '\0' ? strdup(name) : NULL;
    out->ident = *name != '\0' ? strdup(name) : conf_server_ident(s, span);
    if (out->spec == NULL || out->ident == NULL || (*name != '\0' && out->name == NULL)) {
        conf_server_clear(out);
        *why = "out of memory";
        return -1;
    }
    out->weight = (unsigned)weight;
    return 0;
}
