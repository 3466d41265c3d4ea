/* opt: command-line parsing (see opt.h and docs/cli.md). */
#include "opt.h"
#include "core/buf.h"
#include "core/log.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

static const struct option opt_long[] = {
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { "test-conf", no_argument, NULL, 't' },
    { "daemonize", no_argument, NULL, 'd' },
    { "describe-stats", no_argument, NULL, 'D' },
    { "verbose", required_argument, NULL, 'v' },
    { "output", required_argument, NULL, 'o' },
    { "conf-file", required_argument, NULL, 'c' },
    { "stats-port", required_argument, NULL, 's' },
    { "stats-interval", required_argument, NULL, 'i' },
    { "stats-addr", required_argument, NULL, 'a' },
    { "pid-file", required_argument, NULL, 'p' },
    { "mbuf-size", required_argument, NULL, 'm' },
    { NULL, 0, NULL, 0 },
};

static const char opt_short[] = "hVtdDv:o:c:s:i:a:p:m:";

void opt_usage(void)
{
    printf("Usage: legate [-?hVdDt] [-v verbosity level] [-o output file]\n"
           "              [-c conf file] [-s stats port] [-a stats addr]\n"
           "              [-i stats interval] [-p pid file] [-m mbuf size]\n"
           "\n"
           "Options:\n"
           "  -h, --help             : this help\n"
           "  -V, --version          : show version and exit\n"
           "  -t, --test-conf        : test configuration for syntax errors and exit\n"
           "  -d, --daemonize        : run as a daemon\n"
           "  -D, --describe-stats   : print stats description and exit\n"
           "  -v, --verbose=N        : set logging level (default: %d, min: %d, max: %d)\n"
           "  -o, --output=S         : set logging file (default: stderr)\n"
           "  -c, --conf-file=S      : set configuration file (default: conf/legate.yml)\n"
           "  -s, --stats-port=N     : set stats monitoring port (default: 22222)\n"
           "  -a, --stats-addr=S     : set stats monitoring ip (default: 127.0.0.1)\n"
           "  -i, --stats-interval=N : set stats aggregation interval in msec (default: 30000 msec)\n"
           "  -p, --pid-file=S       : set pid file (default: off)\n"
           "  -m, --mbuf-size=N      : set size of mbuf chunk in bytes (default: %d bytes)\n",
           LOG_NOTICE, LOG_EMERG, LOG_PVERB, BUF_DEFAULT_SIZE);
}

static int opt_number(const char *flag, const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < min || v > max) {
        fprintf(stderr, "legate: option %s requires a number from %ld to %ld, got '%s'\n",
                flag, min, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

int opt_parse(struct opt *o, int argc, char **argv)
{
    *o = (struct opt){
        .conf_file = "conf/legate.yml",
        .stats_addr = "127.0.0.1",
        .verbosity = LOG_NOTICE,
        .stats_port = 22222,
        .stats_interval = 30000,
        .mbuf_size = BUF_DEFAULT_SIZE,
    };
    long v;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, opt_short, opt_long, NULL)) != -1) {
        switch (c) {
        case 'h': o->show_help = true; break;
        case 'V': o->show_version = true; break;
        case 't': o->test_conf = true; break;
        case 'd': o->daemonize = true; break;
        case 'D': o->describe_stats = true; break;
        case 'o': o->log_file = optarg; break;
        case 'c': o->conf_file = optarg; break;
        case 'a': o->stats_addr = optarg; break;
        case 'p': o->pid_file = optarg; break;
        case 'v':
            if (opt_number("-v", optarg, LOG_EMERG, LOG_PVERB, &v) == -1) {
                return -1;
            }
            o->verbosity = (int)v;
            break;
        case 's':
            if (opt_number("-s", optarg, 1, 65535, &v) == -1) {
                return -1;
            }
            o->stats_port = (unsigned)v;
            break;
        case 'i':
            if (opt_number("-i", optarg, 1, 3600000, &v) == -1) {
                return -1;
            }
            o->stats_interval = (unsigned)v;
            break;
        case 'm':
            if (opt_number("-m", optarg, BUF_MIN_SIZE, BUF_MAX_SIZE, &v) == -1) {
                return -1;
            }
            o->mbuf_size = (size_t)v;
            break;
        default:
            if (optopt != 0) {
                fprintf(stderr, "legate: invalid option or missing argument -- '%c'\n", optopt);
            } else {
                fprintf(stderr, "legate: invalid option '%s'\n", argv[optind - 1]);
            }
            fprintf(stderr, "Try 'legate --help' for more information.\n");
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "legate: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}
