/* http_split: arm choice (see http_split.h). */
#include "http_split.h"

#include <string.h>

static uint64_t split_hash(const char *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)key[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static size_t split_arm_at(const struct conf_pool *cp, uint64_t point)
{
    uint64_t total = 0;
    for (size_t i = 0; i < cp->narms; i++) {
        total += cp->arms[i].weight;
    }
    uint64_t x = point % total;
    for (size_t i = 0; i < cp->narms; i++) {
        if (x < cp->arms[i].weight) {
            return i;
        }
        x -= cp->arms[i].weight;
    }
    return 0; /* not reached: total > 0 is checked by the config */
}

size_t http_split_arm_of_key(const struct conf_pool *cp, const char *key, size_t len)
{
    return split_arm_at(cp, split_hash(key, len));
}

/* The value of cookie `name` in a Cookie header ("a=1; b=2"). */
static const char *split_cookie(const char *v, size_t vlen, const char *name, size_t *len)
{
    size_t nlen = strlen(name), i = 0;
    while (i < vlen) {
        while (i < vlen && (v[i] == ' ' || v[i] == ';')) {
            i++;
        }
        size_t start = i;
        while (i < vlen && v[i] != ';') {
            i++;
        }
        if (i - start > nlen && memcmp(v + start, name, nlen) == 0 && v[start + nlen] == '=') {
            *len = i - start - nlen - 1;
            return v + start + nlen + 1;
        }
    }
    return NULL;
}

size_t http_split_pick(const struct conf_pool *cp, const struct http_head *h, const char *addr,
                       uint64_t rnd)
{
    size_t len = 0;
    if (cp->override_header != NULL) {
        const char *v = http_head_get(h, cp->override_header, &len);
        for (size_t i = 0; v != NULL && i < cp->narms; i++) {
            if (strlen(cp->arms[i].name) == len && memcmp(cp->arms[i].name, v, len) == 0) {
                return i;
            }
        }
    }
    const char *key = NULL;
    switch (cp->sticky) {
    case CONF_STICKY_HEADER:
        key = http_head_get(h, cp->sticky_name, &len);
        break;
    case CONF_STICKY_COOKIE: {
        size_t clen;
        const char *c = http_head_get(h, "cookie", &clen);
        key = c ? split_cookie(c, clen, cp->sticky_name, &len) : NULL;
        break;
    }
    case CONF_STICKY_ADDR:
        key = addr;
        len = strlen(addr);
        break;
    case CONF_STICKY_NONE:
        break;
    }
    if (key != NULL && len > 0) {
        return http_split_arm_of_key(cp, key, len);
    }
    return split_arm_at(cp, rnd);
}
