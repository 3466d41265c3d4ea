/* server: a pool's slot table (see server.h). */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t server_slots(const struct conf_pool *cp)
{
    size_t n = cp->nservers;
    for (size_t i = 0; i < cp->ndisc; i++) {
        n += cp->disc[i].max_endpoints;
    }
    return n;
}

int server_table_init(struct server_table *t, const struct conf_pool *cp, unsigned nworkers)
{
    memset(t, 0, sizeof(*t));
    size_t n = server_slots(cp);
    t->nslots = n;
    t->nstatic = cp->nservers;
    t->nworkers = nworkers;
    atomic_init(&t->version, 0);
    t->servers = calloc(n, sizeof(*t->servers));
    t->state = calloc(n, sizeof(*t->state));
    t->down = calloc(n, sizeof(*t->down));
    t->users = calloc(n, sizeof(*t->users));
    t->acked = calloc(nworkers ? nworkers : 1, sizeof(*t->acked));
    t->removed_at = calloc(n, sizeof(*t->removed_at));
    t->gen = calloc(n, sizeof(*t->gen));
    if (t->servers == NULL || t->state == NULL || t->down == NULL || t->users == NULL ||
        t->acked == NULL || t->removed_at == NULL || t->gen == NULL) {
        server_table_free(t);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        atomic_init(&t->state[i], i < t->nstatic ? SERVER_ACTIVE : SERVER_FREE);
        atomic_init(&t->down[i], false);
        atomic_init(&t->users[i], 0);
        atomic_init(&t->gen[i], 0);
    }
    for (unsigned w = 0; w < nworkers; w++) {
        atomic_init(&t->acked[w], 0);
    }
    if (t->nstatic > 0) {
        memcpy(t->servers, cp->servers, t->nstatic * sizeof(*t->servers));
    }
    return 0;
}

/* A discovered slot's strings are its own (one block: spec, ident). */
static void server_slot_clear(struct server_table *t, size_t i)
{
    free(t->servers[i].spec);
    memset(&t->servers[i], 0, sizeof(t->servers[i]));
}

void server_table_free(struct server_table *t)
{
    for (size_t i = t->nstatic; t->servers != NULL && i < t->nslots; i++) {
        server_slot_clear(t, i);
    }
    free(t->servers);
    free(t->state);
    free(t->down);
    free(t->users);
    free(t->acked);
    free(t->removed_at);
    free(t->gen);
    memset(t, 0, sizeof(*t));
}

void server_table_publish(struct server_table *t)
{
    atomic_fetch_add_explicit(&t->version, 1, memory_order_release);
}

static const char *server_ep_ident(const struct server_ep *e, char *buf, size_t len)
{
    if (e->ident[0] != '\0') {
        return e->ident;
    }
    net_addr_str(&e->addr, buf, len);
    return buf;
}

static bool server_same(const struct conf_server *s, const struct server_ep *e)
{
    char buf[NET_ADDR_STRLEN];
    return s->weight == e->weight && net_addr_equal(&s->addr, &e->addr) &&
           strcmp(s->ident, server_ep_ident(e, buf, sizeof(buf))) == 0;
}

/* Fill free slot i with endpoint e: spec "ip:port", ident its name or,
 * as twemproxy names an unnamed server, "ip:port" too. One block holds
 * both strings. */
static int server_slot_fill(struct server_table *t, size_t i, const struct server_ep *e)
{
    char spec[NET_ADDR_STRLEN], buf[NET_ADDR_STRLEN];
    net_addr_str(&e->addr, spec, sizeof(spec));
    const char *ident = server_ep_ident(e, buf, sizeof(buf));
    size_t ls = strlen(spec) + 1, li = strlen(ident) + 1;
    char *s = malloc(ls + li);
    if (s == NULL) {
        return -1;
    }
    memcpy(s, spec, ls);
    memcpy(s + ls, ident, li);
    t->servers[i] = (struct conf_server){ .spec = s, .ident = s + ls, .addr = e->addr,
                                          .weight = e->weight };
    atomic_fetch_add_explicit(&t->gen[i], 1, memory_order_relaxed);
    atomic_store_explicit(&t->down[i], false, memory_order_relaxed);
    atomic_store_explicit(&t->state[i], SERVER_ACTIVE, memory_order_relaxed);
    return 0;
}

void server_table_apply(struct server_table *t, size_t first, size_t count,
                        const struct server_ep *eps, size_t n, struct server_change *out)
{
    size_t end = first + count;
    memset(out, 0, sizeof(*out));
    bool *wanted = calloc(t->nslots, sizeof(*wanted));
    bool *placed = calloc(n ? n : 1, sizeof(*placed));
    if (wanted == NULL || placed == NULL) {
        free(wanted);
        free(placed);
        out->refused = n;
        return;
    }
    /* The same endpoint twice (two SRV records, a repeated line): once. */
    for (size_t k = 0; k < n; k++) {
        for (size_t j = 0; j < k && !placed[k]; j++) {
            placed[k] = eps[j].weight == eps[k].weight &&
                        net_addr_equal(&eps[j].addr, &eps[k].addr) &&
                        strcmp(eps[j].ident, eps[k].ident) == 0;
        }
    }
    /* Endpoints already in a slot (or draining there: taken back). */
    for (size_t k = 0; k < n; k++) {
        if (placed[k]) {
            continue;
        }
        for (size_t i = first; i < end; i++) {
            enum server_state st = server_state_of(t, i);
            if (st != SERVER_FREE && !wanted[i] && server_same(&t->servers[i], &eps[k])) {
                wanted[i] = placed[k] = true;
                if (st == SERVER_DRAINING) {
                    atomic_store_explicit(&t->state[i], SERVER_ACTIVE, memory_order_relaxed);
                    t->ndraining--;
                    out->added++;
                } else {
                    out->kept++;
                }
                break;
            }
        }
    }
    unsigned long next = atomic_load_explicit(&t->version, memory_order_relaxed) + 1;
    for (size_t i = first; i < end; i++) {
        if (!wanted[i] && server_state_of(t, i) == SERVER_ACTIVE) {
            atomic_store_explicit(&t->state[i], SERVER_DRAINING, memory_order_relaxed);
            t->removed_at[i] = next;
            t->ndraining++;
            out->removed++;
        }
    }
    (void)server_table_reclaim(t);
    for (size_t k = 0; k < n; k++) {
        if (placed[k]) {
            continue;
        }
        size_t i = first;
        while (i < end && server_state_of(t, i) != SERVER_FREE) {
            i++;
        }
        if (i == end || server_slot_fill(t, i, &eps[k]) == -1) {
            out->refused++;
            continue;
        }
        out->added++;
    }
    free(wanted);
    free(placed);
    if (out->added || out->removed) {
        server_table_publish(t);
    }
}

size_t server_table_reclaim(struct server_table *t)
{
    if (t->ndraining == 0) {
        return 0;
    }
    unsigned long oldest = ~0ul;
    for (unsigned w = 0; w < t->nworkers; w++) {
        unsigned long a = atomic_load_explicit(&t->acked[w], memory_order_acquire);
        oldest = a < oldest ? a : oldest;
    }
    for (size_t i = t->nstatic; i < t->nslots; i++) {
        if (server_state_of(t, i) == SERVER_DRAINING && t->removed_at[i] <= oldest &&
            atomic_load_explicit(&t->users[i], memory_order_acquire) == 0) {
            server_slot_clear(t, i);
            atomic_store_explicit(&t->state[i], SERVER_FREE, memory_order_relaxed);
            t->ndraining--;
        }
    }
    return t->ndraining;
}
