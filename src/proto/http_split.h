/* http_split: which arm of an experiment a request goes to.
 *
 * An override header naming an arm wins. Otherwise, with a sticky key (a
 * header, a cookie, or the client address) present, the key's 64-bit
 * FNV-1a hash picks a point in [0, total weight) and the arm owning it
 * takes the request: the same key lands in the same arm on every replica
 * and across restarts, for as long as the arms and weights stay the same.
 * Without a key the point is random. Weight-0 arms own no points. */
#ifndef LEGATE_HTTP_SPLIT_H
#define LEGATE_HTTP_SPLIT_H

#include "../conf/conf.h"
#include "http_head.h"

#include <stdint.h>

/* The arm index for request head `h` from client `addr` (text); `rnd` is
 * a random number for requests without a key. */
size_t http_split_pick(const struct conf_pool *cp, const struct http_head *h, const char *addr,
                       uint64_t rnd);

/* The arm a sticky key alone maps to (for tests and tools). */
size_t http_split_arm_of_key(const struct conf_pool *cp, const char *key, size_t len);

#endif
