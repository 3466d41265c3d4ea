/* bal: weighted server choice (see bal.h). */
#include "bal.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

int bal_init_servers(struct bal *b, enum conf_balance kind, const struct conf_server *servers,
                     size_t n, uint64_t seed)
{
    b->kind = kind;
    b->n = n;
    b->next = 0;
    b->rng = seed ? seed : 0x9E3779B97F4A7C15ull;
    b->servers = calloc(n ? n : 1, sizeof(*b->servers));
    if (b->servers == NULL) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        b->servers[i].weight = servers[i].weight;
    }
    return 0;
}

void bal_free(struct bal *b)
{
    free(b->servers);
    b->servers = NULL;
    b->n = 0;
}

uint64_t bal_random(struct bal *b)
{
    /* xorshift64* */
    uint64_t x = b->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    b->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static bool bal_skipped(const struct bal *b, int i, const int *skip, size_t nskip)
{
    if (b->servers[i].down) {
        return true;
    }
    for (size_t k = 0; k < nskip; k++) {
        if (skip[k] == i) {
            return true;
        }
    }
    return false;
}

static int bal_round_robin(struct bal *b, const int *skip, size_t nskip, uint64_t now_us)
{
    (void)now_us;
    int64_t total = 0;
    int best = -1;
    for (size_t i = 0; i < b->n; i++) {
        if (bal_skipped(b, (int)i, skip, nskip)) {
            continue;
        }
        struct bal_server *s = &b->servers[i];
        s->current += s->weight;
        total += s->weight;
        if (best == -1 || s->current > b->servers[best].current) {
            best = (int)i;
        }
    }
    if (best != -1) {
        b->servers[best].current -= total;
    }
    return best;
}

static int bal_least_conn(struct bal *b, const int *skip, size_t nskip, uint64_t now_us)
{
    (void)now_us;
    int best = -1;
    for (size_t k = 0; k < b->n; k++) {
        size_t i = (b->next + k) % b->n;
        if (bal_skipped(b, (int)i, skip, nskip)) {
            continue;
        }
        const struct bal_server *s = &b->servers[i];
        if (best == -1) {
            best = (int)i;
            continue;
        }
        const struct bal_server *t = &b->servers[best];
        /* active/weight smaller wins; compare cross-multiplied. */
        if ((uint64_t)s->active * t->weight < (uint64_t)t->active * s->weight) {
            best = (int)i;
        }
    }
    if (best != -1) {
        b->next = ((size_t)best + 1) % b->n; /* spread ties */
    }
    return best;
}

static int bal_weighted_random(struct bal *b, const int *skip, size_t nskip, uint64_t now_us)
{
    (void)now_us;
    uint64_t total = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (!bal_skipped(b, (int)i, skip, nskip)) {
            total += b->servers[i].weight;
        }
    }
    if (total == 0) {
        return -1;
    }
    uint64_t r = bal_random(b) % total;
    for (size_t i = 0; i < b->n; i++) {
        if (bal_skipped(b, (int)i, skip, nskip)) {
            continue;
        }
        if (r < b->servers[i].weight) {
            return (int)i;
        }
        r -= b->servers[i].weight;
    }
    return -1;
}

/* The share of a server's average that still stands at `now_us`:
 * e^(-dt / BAL_EWMA_TAU_US) since its last sample. */
static double bal_decay(const struct bal_server *s, uint64_t now_us)
{
    return now_us > s->ewma_at_us ? exp(-(double)(now_us - s->ewma_at_us) / BAL_EWMA_TAU_US)
                                  : 1.0;
}

void bal_observe(struct bal *b, size_t i, uint64_t latency_us, uint64_t now_us)
{
    if (b->kind != CONF_BAL_P2C_EWMA) {
        return;
    }
    struct bal_server *s = &b->servers[i];
    double rtt = (double)latency_us;
    if (rtt > s->ewma_us || s->ewma_at_us == 0) {
        s->ewma_us = rtt;
    } else {
        double w = bal_decay(s, now_us);
        s->ewma_us = s->ewma_us * w + rtt * (1.0 - w);
    }
    s->ewma_at_us = now_us;
}

/* A server's cost at `now_us`. Its average decays toward zero while no
 * sample comes (as samples of 0 would move it), so a server that lost
 * every duel after one slow answer is tried again once it looks cheaper
 * than the others' fresh averages, and its next sample says what it is
 * worth; without the decay it would lose every duel for as long as the
 * others stayed fast. */
static double bal_cost(const struct bal_server *s, uint64_t now_us)
{
    double ewma = s->ewma_us * bal_decay(s, now_us); /* 0 until a first sample */
    return (ewma + 1.0) * (double)(s->active + 1) / (double)(s->weight ? s->weight : 1);
}

/* The k-th (0-based) server that may be picked. */
static int bal_nth(const struct bal *b, size_t k, const int *skip, size_t nskip)
{
    for (size_t i = 0; i < b->n; i++) {
        if (!bal_skipped(b, (int)i, skip, nskip) && k-- == 0) {
            return (int)i;
        }
    }
    return -1;
}

static int bal_p2c(struct bal *b, const int *skip, size_t nskip, uint64_t now_us)
{
    size_t m = 0;
    for (size_t i = 0; i < b->n; i++) {
        m += !bal_skipped(b, (int)i, skip, nskip);
    }
    if (m <= 1) {
        return m == 1 ? bal_nth(b, 0, skip, nskip) : -1;
    }
    uint64_t r = bal_random(b);
    size_t x = (size_t)(r % m);
    size_t y = (size_t)((r >> 32) % (m - 1));
    y += y >= x; /* a different one */
    int a = bal_nth(b, x, skip, nskip), c = bal_nth(b, y, skip, nskip);
    return bal_cost(&b->servers[c], now_us) < bal_cost(&b->servers[a], now_us) ? c : a;
}

typedef int (*bal_pick_fn)(struct bal *b, const int *skip, size_t nskip, uint64_t now_us);

/* Indexed by enum conf_balance. */
static const bal_pick_fn bal_pickers[] = {
    [CONF_BAL_ROUND_ROBIN] = bal_round_robin,
    [CONF_BAL_LEAST_CONN] = bal_least_conn,
    [CONF_BAL_RANDOM] = bal_weighted_random,
    [CONF_BAL_P2C_EWMA] = bal_p2c,
};

int bal_pick(struct bal *b, const int *skip, size_t nskip, uint64_t now_us)
{
    return bal_pickers[b->kind](b, skip, nskip, now_us);
}
