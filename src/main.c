/* main: command line, config, signals, daemonize; starts the workers and
 * waits for a signal to stop them (see docs/architecture.md). */
#include "admin/admin.h"
#include "admin/stats.h"
#include "conf/conf.h"
#include "conf/conf_tree.h"
#include "core/acceptor.h"
#include "core/ev.h"
#include "core/fwatch.h"
#include "core/log.h"
#include "core/net.h"
#include "upstream/handoff.h"
#include "opt.h"
#include "gen.h"
#include "version.h"
#include "wk.h"

#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Everything main owns, freed in one place. */
struct legate {
    struct opt opt;
    struct log log;
    struct gen *cur;            /* the running configuration */
    struct gen *retiring;       /* earlier ones, draining after a reload */
    struct handoff_hub hub;     /* clients moving between generations (handoff.h) */
    bool pid_written;
    int64_t started;            /* wall clock, for the stats' uptime */
    struct ev_loop *loop;       /* main's own: signals, stats, health, discovery */
    struct ev_io sigio;
    struct acceptor stats;      /* the stats listener */
    struct admin *admin;        /* the admin HTTP listener, when configured */
    struct ev_timer reap;       /* frees retired generations once they ended */
    struct fwatch watch;        /* the config file's content, as last loaded */
    struct ev_timer watch_tick; /* `watch_config`: checks it for a settled change */
    char host[256];
};

static void legate_describe_stats(void)
{
    printf("This is legate-%s\n\n", LEGATE_VERSION);
    stats_describe(stdout);
}

static int legate_daemonize(void)
{
    pid_t pid = fork();
    if (pid == -1) {
        return -1;
    }
    if (pid != 0) {
        _exit(0);
    }
    if (setsid() == -1) {
        return -1;
    }
    pid = fork();
    if (pid == -1) {
        return -1;
    }
    if (pid != 0) {
        _exit(0);
    }
    umask(0);
    int fd = open("/dev/null", O_RDWR);
    if (fd == -1) {
        return -1;
    }
    dup2(fd, STDIN_FILENO);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    if (fd > STDERR_FILENO) {
        close(fd);
    }
    return 0;
}

static int legate_write_pid(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    fprintf(f, "%d\n", (int)getpid());
    return fclose(f) == 0 ? 0 : -1;
}

enum { LEGATE_REAP_MS = 100 };

/* A heap's free top over LEGATE_TRIM_THRESHOLD is given back on free
 * (malloc_trim never shrinks a thread arena's top, so this bounds what a
 * worker keeps after a burst); blocks over LEGATE_MMAP_THRESHOLD are
 * mapped on their own. */
enum { LEGATE_TRIM_THRESHOLD = 128 << 10, LEGATE_MMAP_THRESHOLD = 1 << 20 };

/* Free the retired generations whose threads have all ended. */
static void legate_reap(struct ev_loop *loop, struct ev_timer *t)
{
    struct legate *lg = t->data;
    struct gen **pp = &lg->retiring;
    while (*pp != NULL) {
        struct gen *g = *pp;
        if (gen_finished(g)) {
            *pp = g->next;
            gen_free(g);
            free(g);
            log_notice(&lg->log, "the previous configuration has finished draining");
        } else {
            pp = &g->next;
        }
    }
    if (lg->retiring != NULL) {
        ev_timer_start(loop, t, LEGATE_REAP_MS);
    }
}

/* Lend the running configuration's counters to a stats page (admin.h). */
static int legate_view(void *data, struct admin_view *v)
{
    const struct legate *lg = data;
    const struct gen *g = lg->cur;
    v->cf = g->conf;
    v->nworkers = g->nworkers;
    for (unsigned i = 0; i < g->nworkers; i++) {
        v->ws[i] = &g->workers[i].stats;
    }
    v->started = lg->started;
    v->source = lg->host;
    v->tabs = calloc(g->conf->npools, sizeof(*v->tabs));
    for (size_t i = 0; v->tabs != NULL && i < g->conf->npools; i++) {
        v->tabs[i] = &g->shared[i].tab;
    }
    return v->tabs == NULL ? -1 : 0;
}

/* Validate the config file's content `c` (read by fwatch_take or found
 * settled by fwatch_settled). Returns 0 and a snapshot with one reference,
 * or -1 with "file:line:column: ..." (or "file: ...") in err. */
static int legate_load(const struct legate *lg, const struct fwatch_content *c,
                       struct conf **cf, char *err, size_t errlen)
{
    *cf = NULL;
    if (c->err != 0) {
        snprintf(err, errlen, "%s: cannot open: %s", lg->opt.conf_file, strerror(c->err));
        return -1;
    }
    return conf_load_buffer(lg->opt.conf_file, c->text, c->len, cf, err, errlen);
}

/* Load the config file's content `c` (SIGHUP, or a settled change under
 * `watch_config`): when it is valid and its listeners open, a new
 * generation takes new clients and the running one drains. Otherwise the
 * running configuration stays and the reason is logged. */
static void legate_reload(struct legate *lg, const struct fwatch_content *c)
{
    char err[1024];
    struct conf *cf = NULL;
    if (legate_load(lg, c, &cf, err, sizeof(err)) == -1) {
        log_error(&lg->log, "reload: %s; keeping the running configuration", err);
        return;
    }
    struct gen *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        conf_put(cf);
        log_error(&lg->log, "reload: out of memory; keeping the running configuration");
        return;
    }
    struct admin *admin = cf->has_admin ? lg->admin : NULL;
    bool fresh = cf->has_admin && !admin_listens_on(lg->admin, &cf->admin);
    if (fresh) {
        admin = admin_start(&cf->admin, lg->loop, &lg->log, legate_view, lg);
    }
    bool failed = fresh && admin == NULL;
    if (failed) {
        conf_put(cf); /* gen_start never ran: the reference is still ours */
    } else if (gen_start(g, cf, lg->cur, &lg->hub, &lg->log, lg->opt.mbuf_size,
                         lg->loop) == -1) {
        failed = true;
        admin_stop(fresh ? admin : NULL);
    }
    if (failed) {
        free(g);
        log_error(&lg->log, "reload of '%s' failed (above); keeping the running "
                  "configuration", lg->opt.conf_file);
        return;
    }
    if (admin != lg->admin) {
        admin_stop(lg->admin);
        lg->admin = admin;
    }
    /* Every draining generation hands its idle clients to the newest. */
    gen_link(lg->cur, g);
    for (struct gen *r = lg->retiring; r != NULL; r = r->next) {
        gen_link(r, g);
    }
    gen_retire(lg->cur);
    lg->cur->next = lg->retiring;
    lg->retiring = lg->cur;
    lg->cur = g;
    ev_timer_start(lg->loop, &lg->reap, LEGATE_REAP_MS);
    log_notice(&lg->log, "configuration reloaded from '%s' (%u workers); the previous one "
               "drains", lg->opt.conf_file, g->nstarted);
}

/* Stop every generation (they drain), join them and free everything. */
static void legate_stop(struct legate *lg)
{
    for (struct gen *r = lg->retiring; r != NULL; r = r->next) {
        gen_link(r, NULL); /* nothing to hand over to: clients close */
    }
    if (lg->cur != NULL) {
        gen_link(lg->cur, NULL);
        gen_retire(lg->cur);
    }
    while (lg->retiring != NULL) {
        struct gen *g = lg->retiring;
        lg->retiring = g->next;
        gen_free(g);
        free(g);
    }
    if (lg->cur != NULL) {
        gen_free(lg->cur);
        free(lg->cur);
        lg->cur = NULL;
    }
}

/* Arm the config file check at the running configuration's interval, or
 * leave it off. */
static void legate_watch_arm(struct legate *lg)
{
    uint64_t every = lg->cur->conf->watch_config;
    if (every > 0) {
        ev_timer_start(lg->loop, &lg->watch_tick, every);
    } else {
        ev_timer_stop(lg->loop, &lg->watch_tick);
    }
}

/* `watch_config`: reload once the file's content changed and held still. */
static void legate_watch(struct ev_loop *loop, struct ev_timer *t)
{
    (void)loop;
    struct legate *lg = t->data;
    if (fwatch_settled(&lg->watch)) {
        log_notice(&lg->log, "'%s' changed, reloading", lg->opt.conf_file);
        legate_reload(lg, &lg->watch.tried);
    }
    legate_watch_arm(lg);
}

/* A signal arrived on the signalfd: stop, reopen the log, or note HUP. */
static void legate_signal(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    (void)events;
    struct legate *lg = io->data;
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        int sig = (int)si.ssi_signo;
        if (sig == SIGTERM || sig == SIGINT) {
            log_notice(&lg->log, "signal %d (%s) received, draining", sig, strsignal(sig));
            ev_loop_stop(loop);
        } else if (sig == SIGUSR1) {
            if (log_reopen(&lg->log) == -1) {
                log_error(&lg->log, "cannot reopen log file: %s", strerror(errno));
            } else {
                log_notice(&lg->log, "log file reopened");
            }
        } else if (sig == SIGHUP) {
            log_notice(&lg->log, "SIGHUP received, reloading '%s'", lg->opt.conf_file);
            legate_reload(lg, fwatch_take(&lg->watch));
            legate_watch_arm(lg);
        }
    }
}

/* A stats client connected: send nutcracker's JSON and close, as nutcracker. */
static void legate_stats_accepted(struct acceptor *a, int fd)
{
    struct admin_view v;
    memset(&v, 0, sizeof(v));
    char *json = NULL;
    long n = legate_view(a->data, &v) == -1 ? -1 : stats_json(&json, v.cf, v.tabs, v.ws,
                                                              v.nworkers, v.started, v.source);
    free(v.tabs);
    if (n > 0) {
        /* Small and once per connection: a blocking send bounded by a
         * one-second timeout, so a client that never reads costs 1 s. */
        struct timeval tv = { .tv_sec = 1 };
        (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        const char *p = json;
        while (n > 0) {
            ssize_t w = send(fd, p, (size_t)n, MSG_NOSIGNAL);
            if (w == -1 && errno == EINTR) {
                continue;
            }
            if (w <= 0) {
                break;
            }
            p += w;
            n -= w;
        }
    }
    free(json);
    close(fd);
}

/* Open the stats listener and run the loop until told to stop. Returns 0,
 * or -1 if the listener could not be opened (logged). */
static int legate_listen_stats(struct legate *lg, int sfd)
{
    lg->sigio = (struct ev_io){ .fd = sfd, .fn = legate_signal, .data = lg };
    char spec[300];
    snprintf(spec, sizeof(spec), "%s%s%s:%u", strchr(lg->opt.stats_addr, ':') ? "[" : "",
             lg->opt.stats_addr, strchr(lg->opt.stats_addr, ':') ? "]" : "", lg->opt.stats_port);
    struct net_addr addr;
    char why[256];
    int lfd = -1;
    if (net_addr_parse(spec, &addr, why, sizeof(why)) == -1) {
        log_error(&lg->log, "stats address %s: %s", spec, why);
    } else if ((lfd = net_listen(&addr, 128, false, 0)) == -1) {
        log_error(&lg->log, "cannot listen for stats on %s: %s", spec, strerror(errno));
    }
    int rc = -1;
    if (lfd != -1) {
        acceptor_init(&lg->stats, lfd, "stats", &lg->log, legate_stats_accepted, lg);
        if (ev_io_add(lg->loop, &lg->sigio, EV_READ) == 0 &&
            acceptor_start(&lg->stats, lg->loop) == 0) {
            log_notice(&lg->log, "stats on %s", spec);
            rc = ev_loop_run(lg->loop);
        }
        acceptor_stop(&lg->stats, lg->loop);
        close(lfd);
    }
    return rc;
}

/* Start the first generation for `cf` (the reference is taken over), then
 * serve signals, stats, health checks and discovery until told to stop;
 * stop every generation before returning. Returns 0, or -1 when starting
 * failed (logged). */
static int legate_serve(struct legate *lg, const sigset_t *set, struct conf *cf)
{
    lg->loop = ev_loop_new();
    int sfd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
    lg->cur = calloc(1, sizeof(*lg->cur));
    if (lg->loop == NULL || sfd == -1 || lg->cur == NULL) {
        log_error(&lg->log, "cannot set up signal handling: %s", strerror(errno));
        conf_put(cf);
        free(lg->cur);
        lg->cur = NULL;
        if (sfd != -1) {
            close(sfd);
        }
        ev_loop_free(lg->loop);
        lg->loop = NULL;
        return -1;
    }
    lg->reap = (struct ev_timer){ .fn = legate_reap, .data = lg };
    lg->watch_tick = (struct ev_timer){ .fn = legate_watch, .data = lg };
    int rc = -1;
    if (gen_start(lg->cur, cf, NULL, &lg->hub, &lg->log, lg->opt.mbuf_size, lg->loop) == -1) {
        free(lg->cur);
        lg->cur = NULL;
    } else {
        log_notice(&lg->log, "legate-%s started on pid %d with %u workers", LEGATE_VERSION,
                   (int)getpid(), lg->cur->nstarted);
        const struct conf *cf0 = lg->cur->conf;
        legate_watch_arm(lg);
        if (!cf0->has_admin ||
            (lg->admin = admin_start(&cf0->admin, lg->loop, &lg->log, legate_view, lg)) != NULL) {
            rc = legate_listen_stats(lg, sfd);
        }
        /* Probes are refused from here on: draining is not ready. */
        admin_stop(lg->admin);
        lg->admin = NULL;
        ev_run_pending(lg->loop);
    }
    legate_stop(lg);
    close(sfd);
    ev_loop_free(lg->loop);
    lg->loop = NULL;
    return rc;
}

int main(int argc, char **argv)
{
    struct legate lg;
    memset(&lg, 0, sizeof(lg));
    /* Fixed thresholds: glibc otherwise raises both after the first large
     * block is freed, and a worker arena's free top (which malloc_trim
     * leaves alone) then stays resident after a burst. */
    mallopt(M_TRIM_THRESHOLD, LEGATE_TRIM_THRESHOLD);
    mallopt(M_MMAP_THRESHOLD, LEGATE_MMAP_THRESHOLD);
    if (opt_parse(&lg.opt, argc, argv) == -1) {
        return 1;
    }
    if (lg.opt.show_help) {
        printf("This is legate-%s\n\n", LEGATE_VERSION);
        opt_usage();
        return 0;
    }
    if (lg.opt.show_version) {
        printf("This is legate-%s\n", LEGATE_VERSION);
        return 0;
    }
    if (lg.opt.describe_stats) {
        legate_describe_stats();
        return 0;
    }

    char err[1024];
    struct conf *cf = NULL;
    fwatch_init(&lg.watch, lg.opt.conf_file, CONF_MAX_FILE);
    int loaded = legate_load(&lg, fwatch_take(&lg.watch), &cf, err, sizeof(err));
    if (loaded == -1 || lg.opt.test_conf) {
        fwatch_fini(&lg.watch);
    }
    if (loaded == -1) {
        fprintf(stderr, "legate: configuration file '%s' syntax is invalid\n", lg.opt.conf_file);
        fprintf(stderr, "legate: %s\n", err);
        return 1;
    }
    if (lg.opt.test_conf) {
        fprintf(stderr, "legate: configuration file '%s' syntax is ok\n", lg.opt.conf_file);
        conf_put(cf);
        return 0;
    }
    if (log_open(&lg.log, lg.opt.log_file, lg.opt.verbosity) == -1) {
        fprintf(stderr, "legate: cannot open log file '%s': %s\n", lg.opt.log_file,
                strerror(errno));
        conf_put(cf);
        fwatch_fini(&lg.watch);
        return 1;
    }
    if (lg.opt.daemonize && legate_daemonize() == -1) {
        log_error(&lg.log, "cannot daemonize: %s", strerror(errno));
        conf_put(cf);
        fwatch_fini(&lg.watch);
        return 1;
    }
    if (lg.opt.pid_file != NULL) {
        if (legate_write_pid(lg.opt.pid_file) == -1) {
            log_error(&lg.log, "cannot write pid file '%s': %s", lg.opt.pid_file,
                      strerror(errno));
            conf_put(cf);
            fwatch_fini(&lg.watch);
            return 1;
        }
        lg.pid_written = true;
    }

    /* Workers inherit this mask: only main's sigwaitinfo sees signals. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    lg.started = (int64_t)time(NULL);
    if (gethostname(lg.host, sizeof(lg.host) - 1) == -1) {
        snprintf(lg.host, sizeof(lg.host), "unknown");
    }
    if (handoff_hub_init(&lg.hub) == -1) {
        log_error(&lg.log, "cannot create a mutex");
        conf_put(cf);
        fwatch_fini(&lg.watch);
        return 1;
    }
    int rc = legate_serve(&lg, &set, cf) == -1 ? 1 : 0;
    fwatch_fini(&lg.watch);
    handoff_hub_fini(&lg.hub);
    if (lg.pid_written) {
        unlink(lg.opt.pid_file);
    }
    log_notice(&lg.log, "legate stopped");
    log_close(&lg.log);
    return rc;
}
