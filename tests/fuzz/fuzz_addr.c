/* libFuzzer target: address and server-line parsers on arbitrary text. */
#include "conf/conf_value.h"
#include "core/net.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1024) {
        return 0;
    }
    char *s = malloc(size + 1);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0';
    struct net_addr a;
    char err[256];
    if (net_addr_parse(s, &a, err, sizeof(err)) == 0) {
        char back[NET_ADDR_STRLEN];
        net_addr_str(&a, back, sizeof(back));
    }
    (void)net_addr_span(s);
    struct conf_server srv;
    const char *why;
    if (conf_value_server(s, &srv, err, sizeof(err), &why) == 0) {
        conf_server_clear(&srv);
    }
    uint64_t ms;
    (void)conf_value_duration(s, &ms, &why);
    unsigned mode;
    (void)conf_value_mode(s, &mode, &why);
    free(s);
    return 0;
}
