/* gen: a generation of the configuration (see gen.h). */
#include "gen.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned gen_worker_count(const struct conf *cf)
{
    if (cf->workers != 0) {
        return cf->workers;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) {
        return 1;
    }
    return n > CONF_MAX_WORKERS ? CONF_MAX_WORKERS : (unsigned)n;
}

void gen_poke(struct gen *g)
{
    for (unsigned i = 0; i < g->nstarted; i++) {
        wk_poke(&g->workers[i]);
    }
}

static void gen_changed(void *arg)
{
    gen_poke(arg);
}

/* The pool of `prev` listening where `cp` does, or NULL. */
static size_t gen_prev_pool(const struct gen *prev, const struct conf_pool *cp)
{
    for (size_t i = 0; prev != NULL && prev->shared != NULL && i < prev->conf->npools; i++) {
        if (net_addr_equal(&prev->conf->pools[i].listen, &cp->listen)) {
            return i;
        }
    }
    return SIZE_MAX;
}

/* Wake worker `worker` of generation `arg` to take clients handed to it. */
static void gen_wake(void *arg, unsigned worker)
{
    struct gen *g = arg;
    if (worker < g->nstarted) {
        wk_poke(&g->workers[worker]);
    }
}

void gen_link(struct gen *old, struct gen *succ)
{
    for (size_t i = 0; old->shared != NULL && i < old->conf->npools; i++) {
        size_t k = succ == NULL ? SIZE_MAX : gen_prev_pool(succ, &old->conf->pools[i]);
        handoff_link(&old->shared[i].box, k == SIZE_MAX ? NULL : &succ->shared[k].box);
    }
}

int gen_start(struct gen *g, struct conf *cf, struct gen *prev, struct handoff_hub *hub,
              const struct log *log, size_t mbuf_size, struct ev_loop *loop)
{
    memset(g, 0, sizeof(*g));
    g->conf = cf;
    unsigned n = gen_worker_count(cf);
    g->shared = calloc(cf->npools, sizeof(*g->shared));
    g->workers = calloc(n, sizeof(*g->workers));
    if (g->shared == NULL || g->workers == NULL) {
        log_error(log, "out of memory");
        gen_free(g);
        return -1;
    }
    char err[512];
    for (size_t i = 0; i < cf->npools; i++) {
        size_t k = gen_prev_pool(prev, &cf->pools[i]);
        int rc = k == SIZE_MAX
            ? pool_shared_open(&g->shared[i], cf, &cf->pools[i], n, hub, err, sizeof(err))
            : pool_shared_reopen(&g->shared[i], cf, &cf->pools[i], n, hub, &prev->shared[k],
                                 &prev->conf->pools[k], err, sizeof(err));
        if (rc == -1) {
            log_error(log, "%s", err);
            gen_free(g);
            return -1;
        }
    }
    struct wk_opts wo = { .mbuf_size = mbuf_size };
    for (unsigned i = 0; i < n; i++) {
        if (wk_init(&g->workers[i], i, cf, log, g->shared, &wo) == -1) {
            gen_free(g);
            return -1;
        }
        g->nworkers++;
    }
    for (unsigned i = 0; i < n; i++) {
        if (wk_start(&g->workers[i]) == -1) {
            log_error(log, "cannot start worker %u: %s", i, strerror(errno));
            gen_retire(g);
            gen_free(g);
            return -1;
        }
        g->nstarted++;
    }
    for (size_t i = 0; i < cf->npools; i++) {
        handoff_box_ready(&g->shared[i].box, gen_wake, g);
    }
    if (loop != NULL &&
        (health_start(&g->health, loop, cf, g->shared, log, gen_changed, g) == -1 ||
         disc_start(&g->disc, loop, cf, g->shared, log, gen_changed, g) == -1)) {
        gen_retire(g);
        gen_free(g);
        return -1;
    }
    for (size_t i = 0; i < cf->npools; i++) {
        const struct conf_pool *p = &cf->pools[i];
        log_notice(log, "pool '%s': %s listening on %s, %zu servers, balance %s", p->name,
                   conf_proto_name(p->proto), p->listen_spec, p->nservers,
                   conf_balance_name(p->balance));
    }
    return 0;
}

/* Stop what runs on main's loop for this generation (NULL-safe, once). */
static void gen_stop_main_side(struct gen *g)
{
    disc_stop(g->disc);
    g->disc = NULL;
    health_stop(g->health);
    g->health = NULL;
}

void gen_retire(struct gen *g)
{
    gen_stop_main_side(g);
    for (unsigned i = 0; i < g->nstarted; i++) {
        wk_stop(&g->workers[i]);
    }
}

bool gen_finished(const struct gen *g)
{
    for (unsigned i = 0; i < g->nstarted; i++) {
        if (!atomic_load(&g->workers[i].finished)) {
            return false;
        }
    }
    return true;
}

void gen_free(struct gen *g)
{
    gen_stop_main_side(g);
    for (size_t i = 0; g->shared != NULL && i < g->conf->npools; i++) {
        handoff_box_ready(&g->shared[i].box, NULL, NULL); /* its workers' eventfds close */
    }
    for (unsigned i = 0; i < g->nworkers; i++) {
        if (i < g->nstarted) {
            wk_join(&g->workers[i]);
        } else {
            wk_fini(&g->workers[i]);
        }
    }
    if (g->shared != NULL) {
        for (size_t i = 0; i < g->conf->npools; i++) {
            pool_shared_close(&g->shared[i], &g->conf->pools[i]);
        }
    }
    free(g->workers);
    free(g->shared);
    g->workers = NULL;
    g->shared = NULL;
    g->nworkers = g->nstarted = 0;
    conf_put(g->conf);
    g->conf = NULL;
}
