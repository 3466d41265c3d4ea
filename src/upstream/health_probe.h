/* health_probe: what one active health check of each kind sends and how it
 * judges the answer — tcp (the connect alone), redis (PING, after AUTH when
 * the pool has redis_auth), memcache (version), http (GET path, 2xx/3xx).
 *
 * Pure functions over bytes: no sockets here (health.c does the I/O). */
#ifndef LEGATE_HEALTH_PROBE_H
#define LEGATE_HEALTH_PROBE_H

#include "../conf/conf.h"

#include <stdbool.h>
#include <stddef.h>

enum health_verdict { HEALTH_MORE, HEALTH_PASS, HEALTH_FAIL };

/* The bytes to send to `server` of pool `cp`: a malloc'ed request in *out
 * (NULL for tcp: nothing is sent) and its length. Returns 0, or -1 when
 * out of memory. */
int health_probe_request(const struct conf_pool *cp, const struct conf_server *server,
                         char **out, size_t *len);

/* Judge the `n` bytes answered so far; `eof` once the server closed.
 * HEALTH_MORE: wait for more. On HEALTH_FAIL *why names the reason. */
enum health_verdict health_probe_judge(const struct conf_pool *cp, const char *in, size_t n,
                                       bool eof, const char **why);

#endif
