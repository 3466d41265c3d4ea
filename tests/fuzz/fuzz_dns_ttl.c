/* libFuzzer target: the TTL walk over a DNS answer (discovery's SRV TTL). */
#include "upstream/dns.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t ttl = 7;
    if (dns_answer_min_ttl(data, size, &ttl) == -1 && ttl != 7) {
        __builtin_trap(); /* a failure leaves the output alone */
    }
    return 0;
}
