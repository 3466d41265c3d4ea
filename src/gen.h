/* gen: one generation of the running configuration — its snapshot, the
 * pools' shared state (listeners, server tables), its worker threads, and
 * the health checks and discovery (on main's loop) that feed them.
 *
 * A reload (SIGHUP) starts a new generation next to the running one:
 * listeners on unchanged addresses are shared, so no client is refused;
 * then the old generation drains like a shutdown (its clients finish
 * within shutdown_grace) and is freed once its threads have ended. */
#ifndef LEGATE_GEN_H
#define LEGATE_GEN_H

#include "conf/conf.h"
#include "core/ev.h"
#include "core/log.h"
#include "upstream/disc.h"
#include "upstream/health.h"
#include "upstream/pool.h"
#include "wk.h"

#include <stdbool.h>

struct gen {
    struct conf *conf;          /* one reference held */
    struct pool_shared *shared; /* one per pool */
    struct wk *workers;
    unsigned nworkers;          /* initialised */
    unsigned nstarted;          /* threads running */
    struct health *health;
    struct disc *disc;
    struct gen *next;           /* retiring generations, oldest last */
};

struct handoff_hub;

/* Start generation `g` for `cf` (takes over the caller's reference): open
 * or share listeners (`prev`: the running generation, or NULL), start the
 * workers, then health checks and discovery on `loop`. Its pools' handoff
 * boxes live under `hub` (main's, outliving every generation). Returns 0,
 * or -1 with the reason logged and everything undone except the reference. */
int gen_start(struct gen *g, struct conf *cf, struct gen *prev, struct handoff_hub *hub,
              const struct log *log, size_t mbuf_size, struct ev_loop *loop);

/* Hand the clients `old` lets go of while it drains to `succ` (handoff.h):
 * each pool's to the pool of `succ` with the same listen address and
 * protocol, when there is one. `succ` NULL: they are closed (shutdown). */
void gen_link(struct gen *old, struct gen *succ);

/* Stop health checks and discovery and ask every worker to drain. */
void gen_retire(struct gen *g);

/* Every worker thread of a retired generation has ended. */
bool gen_finished(const struct gen *g);

/* Join the workers (retire first) and free everything. */
void gen_free(struct gen *g);

/* Poke every started worker (a server table changed). */
void gen_poke(struct gen *g);

#endif
