/* ringtool: print the server legate's ring picks for each key, so tests can
 * compare placement with nutcracker's.
 *
 *   ringtool HASH DISTRIBUTION TAG SERVER...   (TAG "-" for none)
 *
 * Reads one hex-encoded key per line on stdin; prints the server index
 * (0-based, in SERVER order) per line. */
#include "conf/conf.h"
#include "conf/conf_value.h"
#include "upstream/ring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: ringtool HASH DIST TAG SERVER...\n");
        return 2;
    }
    struct conf_pool cp;
    memset(&cp, 0, sizeof(cp));
    if (conf_hash_parse(argv[1], &cp.hash) == -1 ||
        conf_dist_parse(argv[2], &cp.distribution) == -1) {
        fprintf(stderr, "ringtool: unknown hash or distribution\n");
        return 2;
    }
    if (strcmp(argv[3], "-") != 0) {
        if (strlen(argv[3]) != 2) {
            fprintf(stderr, "ringtool: a tag is two characters\n");
            return 2;
        }
        memcpy(cp.hash_tag, argv[3], 2);
        cp.has_hash_tag = true;
    }
    cp.nservers = (size_t)(argc - 4);
    cp.servers = calloc(cp.nservers, sizeof(*cp.servers));
    for (size_t i = 0; i < cp.nservers; i++) {
        char buf[256];
        const char *why;
        if (conf_value_server(argv[4 + i], &cp.servers[i], buf, sizeof(buf), &why) == -1) {
            fprintf(stderr, "ringtool: '%s': %s\n", argv[4 + i], why);
            return 2;
        }
    }
    struct ring r;
    if (ring_build(&r, &cp, NULL) == -1) {
        return 1;
    }
    char line[8192];
    uint8_t key[4096];
    while (fgets(line, sizeof(line), stdin) != NULL) {
        size_t n = strcspn(line, "\n");
        size_t len = 0;
        for (size_t i = 0; i + 1 < n && len < sizeof(key); i += 2) {
            int hi = hexval(line[i]), lo = hexval(line[i + 1]);
            if (hi < 0 || lo < 0) {
                fprintf(stderr, "ringtool: bad hex\n");
                return 2;
            }
            key[len++] = (uint8_t)(hi << 4 | lo);
        }
        printf("%d\n", ring_pick(&r, key, len, 0));
    }
    ring_free(&r);
    for (size_t i = 0; i < cp.nservers; i++) {
        conf_server_clear(&cp.servers[i]);
    }
    free(cp.servers);
    return 0;
}
