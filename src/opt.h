/* opt: the command line (nutcracker's flags plus legate's long options). */
#ifndef LEGATE_OPT_H
#define LEGATE_OPT_H

#include <stdbool.h>
#include <stddef.h>

struct opt {
    const char *conf_file;
    const char *pid_file;
    const char *log_file;     /* NULL: stderr */
    const char *stats_addr;
    int verbosity;
    unsigned stats_port;
    unsigned stats_interval;  /* ms */
    size_t mbuf_size;
    bool test_conf;
    bool daemonize;
    bool show_version;
    bool show_help;
    bool describe_stats;
};

/* Fill `o` from argv. Returns 0, or -1 after printing the problem and the
 * usage line to stderr. */
int opt_parse(struct opt *o, int argc, char **argv);

/* Print the full help text to stdout. */
void opt_usage(void);

#endif
