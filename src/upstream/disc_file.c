/* disc_file: endpoints file parsing (see disc_file.h). */
#include "disc_file.h"
#include "../conf/conf_value.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Trim spaces and tabs at both ends of s[0, *len); returns the start. */
static const char *disc_trim(const char *s, size_t *len)
{
    while (*len > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        (*len)--;
    }
    while (*len > 0 && (s[*len - 1] == ' ' || s[*len - 1] == '\t' || s[*len - 1] == '\r')) {
        (*len)--;
    }
    return s;
}

/* One non-empty line (no comment) into *e. Returns 0, or -1 with why. */
static int disc_file_line(const char *s, size_t len, struct server_ep *e, char *why,
                          size_t whylen)
{
    if (len >= 2 && s[0] == '-' && (s[1] == ' ' || s[1] == '\t')) {
        s += 2;
        len -= 2;
        s = disc_trim(s, &len);
    }
    char line[DISC_FILE_MAX_LINE + 1];
    memcpy(line, s, len);
    line[len] = '\0';
    /* Addresses only: a name would block the loop while it resolves. */
    size_t span = net_addr_span(line);
    if (span > 0 && line[0] != '/' && line[0] != '[') {
        char host[INET_ADDRSTRLEN];
        const char *colon = memchr(line, ':', span);
        size_t hl = colon != NULL ? (size_t)(colon - line) : span;
        unsigned char bin[4];
        if (hl >= sizeof(host)) {
            snprintf(why, whylen, "expected an IP address, not a name");
            return -1;
        }
        memcpy(host, line, hl);
        host[hl] = '\0';
        if (inet_pton(AF_INET, host, bin) != 1) {
            snprintf(why, whylen, "expected an IP address, not a name ('%s')", host);
            return -1;
        }
    }
    struct conf_server cs;
    memset(&cs, 0, sizeof(cs));
    char buf[256];
    const char *reason = NULL;
    if (conf_value_server(line, &cs, buf, sizeof(buf), &reason) == -1) {
        snprintf(why, whylen, "%s", reason);
        return -1;
    }
    memset(e, 0, sizeof(*e));
    e->addr = cs.addr;
    e->weight = cs.weight;
    if (cs.name != NULL) {
        if (strlen(cs.name) >= sizeof(e->ident)) {
            conf_server_clear(&cs);
            snprintf(why, whylen, "server name too long");
            return -1;
        }
        memcpy(e->ident, cs.name, strlen(cs.name) + 1);
    }
    conf_server_clear(&cs);
    return 0;
}

int disc_file_parse(const char *text, size_t len, struct server_ep **eps, size_t *n, char *err,
                    size_t errlen)
{
    *eps = NULL;
    *n = 0;
    if (len > DISC_FILE_MAX) {
        snprintf(err, errlen, "larger than %d bytes", DISC_FILE_MAX);
        return -1;
    }
    if (memchr(text, '\0', len) != NULL) {
        snprintf(err, errlen, "a NUL byte in the file");
        return -1;
    }
    size_t cap = 0;
    unsigned lineno = 0;
    for (size_t at = 0; at < len;) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t end = nl != NULL ? (size_t)(nl - text) : len;
        const char *line = text + at;
        size_t ll = end - at;
        at = end + 1;
        lineno++;
        const char *hash = memchr(line, '#', ll);
        if (hash != NULL) {
            ll = (size_t)(hash - line);
        }
        line = disc_trim(line, &ll);
        if (ll == 0) {
            continue;
        }
        char why[300];
        if (ll > DISC_FILE_MAX_LINE) {
            snprintf(err, errlen, "line %u: longer than %d bytes", lineno, DISC_FILE_MAX_LINE);
            goto fail;
        }
        if (*n == DISC_FILE_MAX_ENDPOINTS) {
            snprintf(err, errlen, "line %u: more than %d servers", lineno,
                     DISC_FILE_MAX_ENDPOINTS);
            goto fail;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            struct server_ep *grown = realloc(*eps, cap * sizeof(**eps));
            if (grown == NULL) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            *eps = grown;
        }
        if (disc_file_line(line, ll, &(*eps)[*n], why, sizeof(why)) == -1) {
            snprintf(err, errlen, "line %u: %s", lineno, why);
            goto fail;
        }
        (*n)++;
    }
    return 0;
fail:
    free(*eps);
    *eps = NULL;
    *n = 0;
    return -1;
}
