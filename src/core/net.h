/* net: socket addresses (tcp v4/v6, unix) and non-blocking socket calls. */
#ifndef LEGATE_NET_H
#define LEGATE_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

enum { NET_ADDR_STRLEN = 128 };

struct net_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    int family; /* AF_INET, AF_INET6 or AF_UNIX */
};

/* Parse "host:port", "[v6]:port" or "/path" (unix) into `out`. A host name
 * that is not a literal address is resolved with getaddrinfo (blocking:
 * config time only). Returns 0, or -1 with a reason in `err`. */
int net_addr_parse(const char *s, struct net_addr *out, char *err, size_t errlen);

/* Split "host:port" from a longer "host:port:rest" string: returns the
 * length of the address part of `s` (up to, not including, the colon that
 * ends the port), or 0 if `s` has no port. Handles [v6] and /unix paths
 * (for a path, the address part runs to the last colon). */
size_t net_addr_span(const char *s);

/* The same address (family, bytes, port). */
bool net_addr_equal(const struct net_addr *a, const struct net_addr *b);

/* Render `a` as "ip:port", "[ip6]:port" or the unix path. */
void net_addr_str(const struct net_addr *a, char *buf, size_t len);

/* Create a listening socket, non-blocking, close-on-exec.
 * TCP: SO_REUSEADDR and, if `reuseport`, SO_REUSEPORT (one socket per
 * worker). Unix: an existing socket file is replaced; `mode` (if non-zero)
 * is applied with chmod. Returns the fd, or -1 with errno set. */
int net_listen(const struct net_addr *a, int backlog, bool reuseport, unsigned mode);

/* Accept one connection, non-blocking, close-on-exec. Returns the fd, -2
 * when no connection is pending, or -1 with errno set. */
int net_accept(int lfd);

/* Start a non-blocking connect. Returns the fd with *done set to true if
 * the connection completed at once (unix sockets) or false if it is in
 * progress (wait for writability, then net_connect_result). Returns -1 with
 * errno set if it failed at once. */
int net_connect(const struct net_addr *a, bool *done);

/* The outcome of an in-progress connect: 0, or an errno value. */
int net_connect_result(int fd);

/* TCP_NODELAY on TCP sockets; a no-op elsewhere. */
void net_set_nodelay(int fd, const struct net_addr *a);

#endif
