/* libFuzzer target: health check answers of every kind, whole and cut. */
#include "upstream/health_probe.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    struct conf_pool cp;
    memset(&cp, 0, sizeof(cp));
    cp.health.kind = (enum conf_check)(1 + data[0] % 4);
    cp.redis_auth = (data[0] & 0x10) ? (char *)"pw" : NULL;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    const char *why = NULL;
    enum health_verdict whole = health_probe_judge(&cp, in, n, false, &why);
    if (whole == HEALTH_FAIL && why == NULL) {
        __builtin_trap(); /* a failure always says why */
    }
    /* A verdict on a prefix is final: more bytes never change it. */
    for (size_t k = 0; k < n; k++) {
        why = NULL;
        enum health_verdict part = health_probe_judge(&cp, in, k, false, &why);
        if (part != HEALTH_MORE) {
            if (part != whole) {
                __builtin_trap();
            }
            break;
        }
    }
    why = NULL;
    if (health_probe_judge(&cp, in, n, true, &why) == HEALTH_MORE) {
        __builtin_trap(); /* at end of stream there is always a verdict */
    }
    return 0;
}
