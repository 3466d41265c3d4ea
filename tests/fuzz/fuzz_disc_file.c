/* libFuzzer target: the endpoints file of `discovery: { file: }`. */
#include "upstream/disc_file.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct server_ep *eps = NULL;
    size_t n = 0;
    char err[512];
    if (disc_file_parse((const char *)data, size, &eps, &n, err, sizeof(err)) == 0) {
        for (size_t i = 0; i < n; i++) {
            if (eps[i].weight == 0 || eps[i].addr.len == 0) {
                __builtin_trap(); /* a parsed server always has both */
            }
        }
    } else if (eps != NULL || n != 0 || err[0] == '\0') {
        __builtin_trap(); /* a failure leaves nothing and says why */
    }
    free(eps);
    return 0;
}
