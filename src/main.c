/* main: command line, config, signals, daemonize; starts the workers and
 * waits for a signal to stop them (see docs/architecture.md). */
#include "admin/stats.h"
#include "conf/conf.h"
#include "core/ev.h"
#include "core/log.h"
#include "core/net.h"
#include "opt.h"
#include "upstream/disc.h"
#include "upstream/health.h"
#include "upstream/pool.h"
#include "version.h"
#include "wk.h"

#include <errno.h>
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
    struct conf *conf;
    struct pool_shared *shared; /* one per pool */
    struct wk *workers;
    unsigned nworkers;          /* initialised */
    unsigned nstarted;          /* threads running */
    bool pid_written;
    int64_t started;            /* wall clock, for the stats' uptime */
    struct ev_loop *loop;       /* main's own: signals and the stats listener */
    struct ev_io sigio;
    struct ev_io statsio;
    struct health *health;      /* active checks, on `loop`; NULL if none */
    struct disc *disc;          /* discovery, on `loop`; NULL if none */
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

static unsigned legate_worker_count(const struct conf *cf)
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

/* Open listeners and start the workers. Returns 0, or -1 with the reason
 * logged. */
static int legate_start(struct legate *lg)
{
    struct conf *cf = lg->conf;
    unsigned n = legate_worker_count(cf);
    char err[512];
    lg->shared = calloc(cf->npools, sizeof(*lg->shared));
    lg->workers = calloc(n, sizeof(*lg->workers));
    if (lg->shared == NULL || lg->workers == NULL) {
        log_error(&lg->log, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cf->npools; i++) {
        if (pool_shared_open(&lg->shared[i], cf, &cf->pools[i], n, err, sizeof(err)) == -1) {
            log_error(&lg->log, "%s", err);
            return -1;
        }
    }
    struct wk_opts wo = { .mbuf_size = lg->opt.mbuf_size };
    for (unsigned i = 0; i < n; i++) {
        if (wk_init(&lg->workers[i], i, cf, &lg->log, lg->shared, &wo) == -1) {
            return -1;
        }
        lg->nworkers++;
    }
    for (unsigned i = 0; i < n; i++) {
        if (wk_start(&lg->workers[i]) == -1) {
            log_error(&lg->log, "cannot start worker %u: %s", i, strerror(errno));
            return -1;
        }
        lg->nstarted++;
    }
    for (size_t i = 0; i < cf->npools; i++) {
        const struct conf_pool *p = &cf->pools[i];
        log_notice(&lg->log, "pool '%s': %s listening on %s, %zu servers, balance %s",
                   p->name, conf_proto_name(p->proto), p->listen_spec, p->nservers,
                   conf_balance_name(p->balance));
    }
    log_notice(&lg->log, "legate-%s started on pid %d with %u workers", LEGATE_VERSION,
               (int)getpid(), n);
    return 0;
}

/* Stop started workers (they drain), join them and free everything. */
static void legate_stop(struct legate *lg)
{
    for (unsigned i = 0; i < lg->nstarted; i++) {
        wk_stop(&lg->workers[i]);
    }
    for (unsigned i = 0; i < lg->nworkers; i++) {
        if (i < lg->nstarted) {
            wk_join(&lg->workers[i]);
        } else {
            wk_fini(&lg->workers[i]);
        }
    }
    if (lg->shared != NULL) {
        for (size_t i = 0; i < lg->conf->npools; i++) {
            pool_shared_close(&lg->shared[i], &lg->conf->pools[i]);
        }
    }
    free(lg->workers);
    free(lg->shared);
    if (lg->pid_written) {
        unlink(lg->opt.pid_file);
    }
    conf_put(lg->conf);
    lg->conf = NULL;
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
            log_warn(&lg->log, "SIGHUP: configuration reload is not implemented yet; "
                     "keeping the running configuration");
        }
    }
}

/* A stats client connected: send nutcracker's JSON and close, as nutcracker. */
static void legate_stats_accept(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    (void)events;
    struct legate *lg = io->data;
    for (;;) {
        int fd = net_accept(io->fd);
        if (fd < 0) {
            return;
        }
        struct stats *ws[CONF_MAX_WORKERS];
        for (unsigned i = 0; i < lg->nworkers; i++) {
            ws[i] = &lg->workers[i].stats;
        }
        const struct server_table **tabs = calloc(lg->conf->npools, sizeof(*tabs));
        for (size_t i = 0; tabs != NULL && i < lg->conf->npools; i++) {
            tabs[i] = &lg->shared[i].tab;
        }
        char *json = NULL;
        long n = tabs == NULL ? -1 : stats_json(&json, lg->conf, tabs, ws, lg->nworkers,
                                                lg->started, lg->host);
        free(tabs);
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
}

/* A pool's server table changed (health, discovery): every worker looks
 * at once. */
static void legate_servers_changed(void *arg)
{
    struct legate *lg = arg;
    for (unsigned i = 0; i < lg->nstarted; i++) {
        wk_poke(&lg->workers[i]);
    }
}

/* Serve signals and stats until told to stop. Returns 0, or -1 if the
 * stats listener could not be opened (logged). */
static int legate_serve(struct legate *lg, const sigset_t *set)
{
    lg->loop = ev_loop_new();
    int sfd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (lg->loop == NULL || sfd == -1) {
        log_error(&lg->log, "cannot set up signal handling: %s", strerror(errno));
        if (sfd != -1) {
            close(sfd);
        }
        return -1;
    }
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
        lg->statsio = (struct ev_io){ .fd = lfd, .fn = legate_stats_accept, .data = lg };
        if (ev_io_add(lg->loop, &lg->sigio, EV_READ) == 0 &&
            ev_io_add_shared(lg->loop, &lg->statsio) == 0 &&
            health_start(&lg->health, lg->loop, lg->conf, lg->shared, &lg->log,
                         legate_servers_changed, lg) == 0 &&
            disc_start(&lg->disc, lg->loop, lg->conf, lg->shared, &lg->log,
                       legate_servers_changed, lg) == 0) {
            log_notice(&lg->log, "stats on %s", spec);
            rc = ev_loop_run(lg->loop);
        }
        disc_stop(lg->disc);
        lg->disc = NULL;
        health_stop(lg->health);
        lg->health = NULL;
        close(lfd);
    }
    close(sfd);
    ev_loop_free(lg->loop);
    lg->loop = NULL;
    return rc;
}

int main(int argc, char **argv)
{
    struct legate lg;
    memset(&lg, 0, sizeof(lg));
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
    if (conf_load(lg.opt.conf_file, &lg.conf, err, sizeof(err)) == -1) {
        fprintf(stderr, "legate: configuration file '%s' syntax is invalid\n", lg.opt.conf_file);
        fprintf(stderr, "legate: %s\n", err);
        return 1;
    }
    if (lg.opt.test_conf) {
        fprintf(stderr, "legate: configuration file '%s' syntax is ok\n", lg.opt.conf_file);
        conf_put(lg.conf);
        return 0;
    }
    if (log_open(&lg.log, lg.opt.log_file, lg.opt.verbosity) == -1) {
        fprintf(stderr, "legate: cannot open log file '%s': %s\n", lg.opt.log_file,
                strerror(errno));
        conf_put(lg.conf);
        return 1;
    }
    if (lg.opt.daemonize && legate_daemonize() == -1) {
        log_error(&lg.log, "cannot daemonize: %s", strerror(errno));
        conf_put(lg.conf);
        return 1;
    }
    if (lg.opt.pid_file != NULL) {
        if (legate_write_pid(lg.opt.pid_file) == -1) {
            log_error(&lg.log, "cannot write pid file '%s': %s", lg.opt.pid_file,
                      strerror(errno));
            conf_put(lg.conf);
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
    int rc = 0;
    if (legate_start(&lg) == -1 || legate_serve(&lg, &set) == -1) {
        rc = 1;
    }
    legate_stop(&lg);
    log_notice(&lg.log, "legate stopped");
    log_close(&lg.log);
    return rc;
}
