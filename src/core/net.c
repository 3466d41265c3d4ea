/* net: socket addresses and non-blocking socket calls (see net.h). */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

size_t net_addr_span(const char *s)
{
    if (s[0] == '/') {
        const char *c = strrchr(s, ':');
        return c == NULL ? strlen(s) : (size_t)(c - s);
    }
    const char *p = s;
    if (*p == '[') {
        p = strchr(p, ']');
        if (p == NULL) {
            return 0;
        }
    }
    const char *colon = strchr(p, ':');
    if (colon == NULL) {
        return 0;
    }
    const char *end = colon + 1;
    while (*end >= '0' && *end <= '9') {
        end++;
    }
    return end == colon + 1 ? 0 : (size_t)(end - s);
}

static int net_parse_unix(const char *s, struct net_addr *out, char *err, size_t errlen)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&out->ss;
    size_t n = strlen(s);
    if (n >= sizeof(un->sun_path)) {
        snprintf(err, errlen, "unix socket path longer than %zu bytes",
                 sizeof(un->sun_path) - 1);
        return -1;
    }
    memset(out, 0, sizeof(*out));
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, s, n + 1);
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    out->family = AF_UNIX;
    return 0;
}

int net_addr_parse(const char *s, struct net_addr *out, char *err, size_t errlen)
{
    if (s[0] == '/') {
        return net_parse_unix(s, out, err, errlen);
    }
    char host[256];
    const char *port;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') {
            snprintf(err, errlen, "'%s' is not [ipv6]:port", s);
            return -1;
        }
        size_t hl = (size_t)(close - s - 1);
        if (hl == 0 || hl >= sizeof(host)) {
            snprintf(err, errlen, "bad IPv6 address in '%s'", s);
            return -1;
        }
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL || colon == s) {
            snprintf(err, errlen, "'%s' is not host:port", s);
            return -1;
        }
        size_t hl = (size_t)(colon - s);
        if (hl >= sizeof(host) || memchr(s, ':', hl) != NULL) {
            snprintf(err, errlen, "'%s' is not host:port (IPv6 needs [brackets])", s);
            return -1;
        }
        memcpy(host, s, hl);
        host[hl] = '\0';
        port = colon + 1;
    }
    char *end;
    errno = 0;
    long pn = strtol(port, &end, 10);
    if (*port == '\0' || *end != '\0' || errno != 0 || pn < 0 || pn > 65535) {
        snprintf(err, errlen, "bad port in '%s'", s);
        return -1;
    }
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)pn);
        out->len = sizeof(*s4);
        out->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)pn);
        out->len = sizeof(*s6);
        out->family = AF_INET6;
        return 0;
    }
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    /* Fuzzing must not wait on DNS: names are refused in fuzzer builds. */
    snprintf(err, errlen, "cannot resolve '%s': names not resolved when fuzzing", host);
    return -1;
#endif
    /* A name: resolved once, here (config time). */
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(err, errlen, "cannot resolve '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    out->family = res->ai_family;
    freeaddrinfo(res);
    return 0;
}

bool net_addr_equal(const struct net_addr *a, const struct net_addr *b)
{
    return a->family == b->family && a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

void net_addr_str(const struct net_addr *a, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    if (a->family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)&a->ss;
        snprintf(buf, len, "%s", un->sun_path);
    } else if (a->family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, len, "[%s]:%u", ip, (unsigned)ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(buf, len, "%s:%u", ip, (unsigned)ntohs(s4->sin_port));
    }
}

static int net_socket(int family)
{
    return socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

static void net_close_keep_errno(int fd)
{
    int saved = errno;
    close(fd);
    errno = saved;
}

int net_listen(const struct net_addr *a, int backlog, bool reuseport, unsigned mode)
{
    int fd = net_socket(a->family);
    if (fd == -1) {
        return -1;
    }
    int one = 1;
    if (a->family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)&a->ss;
        struct stat st;
        if (stat(un->sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
            unlink(un->sun_path);
        }
    } else {
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
            (reuseport &&
             setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1)) {
            net_close_keep_errno(fd);
            return -1;
        }
        if (a->family == AF_INET6) {
            (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        }
    }
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) == -1 ||
        listen(fd, backlog) == -1) {
        net_close_keep_errno(fd);
        return -1;
    }
    if (a->family == AF_UNIX && mode != 0) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)&a->ss;
        if (chmod(un->sun_path, (mode_t)mode) == -1) {
            net_close_keep_errno(fd);
            return -1;
        }
    }
    return fd;
}

int net_accept(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd != -1) {
            return fd;
        }
        if (errno == EINTR || errno == ECONNABORTED) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return -2;
        }
        return -1;
    }
}

int net_connect(const struct net_addr *a, bool *done)
{
    int fd = net_socket(a->family);
    if (fd == -1) {
        return -1;
    }
    net_set_nodelay(fd, a);
    int rc;
    do {
        rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    } while (rc == -1 && errno == EINTR);
    if (rc == 0) {
        *done = true;
        return fd;
    }
    if (errno == EINPROGRESS) {
        *done = false;
        return fd;
    }
    if (errno == EAGAIN && a->family == AF_UNIX) {
        errno = ECONNREFUSED; /* unix backlog full: treat as refused */
    }
    net_close_keep_errno(fd);
    return -1;
}

int net_connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) {
        return errno;
    }
    return err;
}

void net_set_nodelay(int fd, const struct net_addr *a)
{
    if (a->family == AF_INET || a->family == AF_INET6) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
}
