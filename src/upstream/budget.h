/* budget: the retry budget of a pool in one worker (as Linkerd's): every
 * request deposits `retry_percent`/100 of a token, a floor of
 * `retry_min_per_second` tokens a second trickles in, and tokens fade with
 * a 10 s time constant, so retries stay near that share of recent
 * requests. A retry takes a whole token or is refused: a total outage
 * cannot multiply the load on the servers. */
#ifndef LEGATE_BUDGET_H
#define LEGATE_BUDGET_H

#include "../conf/conf.h"

#include <stdbool.h>
#include <stdint.h>

enum { BUDGET_TAU_MS = 10000 };

struct budget {
    double tokens;
    uint64_t at_ms;   /* when tokens were last brought up to date */
};

/* A first attempt of a request (or tcp session) at `now_ms`. */
void budget_deposit(struct budget *b, const struct conf_pool *cp, uint64_t now_ms);

/* May a retry go out now? Takes a token when it may. Always true when the
 * pool has no budget. */
bool budget_withdraw(struct budget *b, const struct conf_pool *cp, uint64_t now_ms);

#endif
