/* libFuzzer target: the whole config path (YAML tree, key tables, value
 * parsers) on arbitrary bytes. Any crash, leak or sanitizer report fails. */
#include "conf/conf.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct conf *cf = NULL;
    char err[512];
    err[0] = '\0';
    int rc = conf_load_buffer("fuzz.yml", (const char *)data, size, &cf, err, sizeof(err));
    if (rc == 0) {
        /* A success must give a usable snapshot. */
        if (cf == NULL || cf->npools == 0 || cf->pools[0].nservers == 0) {
            __builtin_trap();
        }
        conf_put(cf);
    } else if (cf != NULL || strncmp(err, "fuzz.yml:", 9) != 0) {
        __builtin_trap(); /* every error names the file */
    }
    return 0;
}
