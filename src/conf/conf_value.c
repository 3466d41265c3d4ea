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

int conf_value_int(const char *s, int64_t min, int64_t max, int64_t *out, const char **why)
{
    bool neg = *s == '-';
    const char *end;
    uint64_t mag;
    if (conf_digits(s + neg, &end, &mag) == -1 || *end != '\0' || mag > INT64_MAX) {
        *why = "expected an integer";
        return -1;
    }
    int64_t v = neg ? -(int64_t)mag : (int64_t)mag;
    if (v < min || v > max) {
        *why = "value out of range";
        return -1;
    }
    *out = v;
    return 0;
}

/* An integer followed by one of `units` (the first may be ""), scaled by
 * its multiplier and at most `max`. The reasons name what was expected. */
struct conf_unit {
    const char *unit;
    uint64_t mult;
};

struct conf_scale {
    const struct conf_unit *units;
    size_t nunits;
    uint64_t max;
    const char *expected;   /* no number */
    const char *too_large;  /* over max */
    const char *bad_unit;   /* unknown unit */
};

static int conf_value_scaled(const char *s, const struct conf_scale *sc, uint64_t *out,
                             const char **why)
{
    const char *end;
    uint64_t v;
    if (conf_digits(s, &end, &v) == -1) {
        *why = sc->expected;
        return -1;
    }
    for (size_t i = 0; i < sc->nunits; i++) {
        if (strcmp(end, sc->units[i].unit) == 0) {
            if (v > sc->max / sc->units[i].mult) {
                *why = sc->too_large;
                return -1;
            }
            *out = v * sc->units[i].mult;
            return 0;
        }
    }
    *why = sc->bad_unit;
    return -1;
}

int conf_value_size(const char *s, uint64_t max, uint64_t *out, const char **why)
{
    static const struct conf_unit units[] = {
        { "", 1 }, { "b", 1 }, { "kb", 1024 }, { "mb", 1024 * 1024 }, { "gb", 1024 * 1024 * 1024 },
    };
    const struct conf_scale sc = {
        units, sizeof(units) / sizeof(units[0]), max,
        "expected a size (bytes, or e.g. \"64kb\", \"512mb\")", "size too large",
        "unknown size unit (use kb, mb or gb)",
    };
    return conf_value_scaled(s, &sc, out, why);
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
    static const struct conf_unit units[] = {
        { "", 1 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
    };
    const struct conf_scale sc = {
        units, sizeof(units) / sizeof(units[0]), CONF_MAX_DURATION_MS,
        "expected a duration (ms as an integer, or e.g. \"500ms\", \"5s\")",
        "duration longer than a week", "unknown duration unit (use ms, s, m or h)",
    };
    return conf_value_scaled(s, &sc, ms, why);
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
