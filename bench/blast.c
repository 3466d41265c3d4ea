/* blast: bulk-transfer load generator for bench/tcp.
 *
 *   blast serve PORT                      sink/source server on 127.0.0.1
 *   blast run HOST PORT up|down BYTES N   N parallel streams of BYTES each;
 *                                         prints total bytes and seconds
 *
 * Protocol: the client sends 'U' or 'D' and an 8-byte length. 'U': the
 * client sends that many bytes, the server answers "K" once it has them
 * all. 'D': the server sends that many bytes, then closes. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { CHUNK = 256 * 1024 };

static int read_full(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0) {
            if (r == -1 && errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) {
            if (w == -1 && errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *serve_one(void *arg)
{
    int fd = (int)(intptr_t)arg;
    static uint8_t zero[CHUNK];
    uint8_t *buf = malloc(CHUNK);
    uint8_t hdr[9];
    if (buf != NULL && read_full(fd, hdr, sizeof(hdr)) == 0) {
        uint64_t n;
        memcpy(&n, hdr + 1, 8);
        if (hdr[0] == 'U') {
            while (n > 0) {
                ssize_t r = read(fd, buf, n < CHUNK ? n : CHUNK);
                if (r <= 0) {
                    break;
                }
                n -= (uint64_t)r;
            }
            (void)write_full(fd, "K", 1);
        } else {
            while (n > 0) {
                size_t k = n < CHUNK ? n : CHUNK;
                if (write_full(fd, zero, k) == -1) {
                    break;
                }
                n -= k;
            }
        }
    }
    free(buf);
    close(fd);
    return NULL;
}

static int serve(int port)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l, (struct sockaddr *)&a, sizeof(a)) == -1 || listen(l, 128) == -1) {
        perror("blast serve");
        return 1;
    }
    for (;;) {
        int fd = accept(l, NULL, NULL);
        if (fd == -1) {
            continue;
        }
        pthread_t t;
        pthread_create(&t, NULL, serve_one, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
}

struct job {
    const char *host;
    int port;
    char dir;
    uint64_t bytes;
    int ok;
};

static void *run_one(void *arg)
{
    struct job *j = arg;
    static uint8_t zero[CHUNK];
    uint8_t *buf = malloc(CHUNK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)j->port) };
    inet_pton(AF_INET, j->host, &a.sin_addr);
    j->ok = 0;
    if (buf == NULL || connect(fd, (struct sockaddr *)&a, sizeof(a)) == -1) {
        goto out;
    }
    uint8_t hdr[9];
    hdr[0] = (uint8_t)j->dir;
    memcpy(hdr + 1, &j->bytes, 8);
    if (write_full(fd, hdr, sizeof(hdr)) == -1) {
        goto out;
    }
    uint64_t n = j->bytes;
    if (j->dir == 'U') {
        while (n > 0) {
            size_t k = n < CHUNK ? n : CHUNK;
            if (write_full(fd, zero, k) == -1) {
                goto out;
            }
            n -= k;
        }
        uint8_t k;
        j->ok = read_full(fd, &k, 1) == 0 && k == 'K';
    } else {
        while (n > 0) {
            ssize_t r = read(fd, buf, n < CHUNK ? n : CHUNK);
            if (r <= 0) {
                goto out;
            }
            n -= (uint64_t)r;
        }
        j->ok = 1;
    }
out:
    free(buf);
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "serve") == 0) {
        return serve(atoi(argv[2]));
    }
    if (argc != 7 || strcmp(argv[1], "run") != 0) {
        fprintf(stderr, "usage: blast serve PORT | blast run HOST PORT up|down BYTES N\n");
        return 2;
    }
    int n = atoi(argv[6]);
    struct job *jobs = calloc((size_t)n, sizeof(*jobs));
    pthread_t *th = calloc((size_t)n, sizeof(*th));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++) {
        jobs[i] = (struct job){ argv[2], atoi(argv[3]), argv[4][0] == 'u' ? 'U' : 'D',
                                strtoull(argv[5], NULL, 10), 0 };
        pthread_create(&th[i], NULL, run_one, &jobs[i]);
    }
    int ok = 1;
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        ok &= jobs[i].ok;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%llu %.6f\n", (unsigned long long)jobs[0].bytes * (unsigned long long)n, secs);
    return ok ? 0 : 1;
}
