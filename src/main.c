/* main: command line, config, signals, daemonize; starts the workers and
 * waits for a signal to stop them (see docs/architecture.md). */
#include "conf/conf.h"
#include "core/log.h"
#include "opt.h"
#include "upstream/pool.h"
#include "version.h"
#include "wk.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
};

static void legate_describe_stats(void)
{
    printf("This is legate-%s\n\n"
           "The nutcracker-compatible stats listener (-s, -a, -i) comes with the\n"
           "redis and memcache pools; this version accepts the flags and serves no\n"
           "stats yet.\n", LEGATE_VERSION);
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

/* Wait for signals until told to stop. */
static void legate_signals(struct legate *lg, const sigset_t *set)
{
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(set, &si);
        if (sig == -1) {
            continue; /* EINTR */
        }
        if (sig == SIGTERM || sig == SIGINT) {
            log_notice(&lg->log, "signal %d (%s) received, draining", sig, strsignal(sig));
            return;
        }
        if (sig == SIGUSR1) {
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

    int rc = 0;
    if (legate_start(&lg) == -1) {
        rc = 1;
    } else {
        legate_signals(&lg, &set);
    }
    legate_stop(&lg);
    log_notice(&lg.log, "legate stopped");
    log_close(&lg.log);
    return rc;
}
