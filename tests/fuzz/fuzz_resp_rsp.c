/* libFuzzer target: the RESP2/RESP3 response parser, whole versus cut
 * into uneven pieces; any disagreement traps. */
#include "proto/resp.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_MSGS = 64 };

struct outcome {
    int rc[MAX_MSGS];
    uint64_t size[MAX_MSGS];
    uint8_t type[MAX_MSGS];
    int64_t integer[MAX_MSGS];
    int64_t count[MAX_MSGS];
    int n;
};

static const struct resp_limits fuzz_limits = {
    .max_args = 64, .max_bulk = 1024, .max_request = 4096, .max_inline = 256,
};

static void run(const uint8_t *data, size_t size, size_t piece, struct outcome *o)
{
    memset(o, 0, sizeof(*o));
    size_t off = 0;
    while (off < size && o->n < MAX_MSGS) {
        struct resp_rsp r;
        resp_rsp_init(&r);
        int rc = RESP_AGAIN;
        while (off < size && rc == RESP_AGAIN) {
            size_t n = piece == 0 || size - off < piece ? size - off : piece;
            size_t used;
            rc = resp_rsp_feed(&r, data + off, n, &used, &fuzz_limits);
            if (used > n) {
                __builtin_trap();
            }
            off += used;
            piece = piece ? piece % 7 + 1 : 0;
        }
        o->rc[o->n] = rc;
        o->size[o->n] = r.size;
        o->type[o->n] = r.type;
        o->integer[o->n] = r.integer;
        o->count[o->n] = r.count;
        o->n++;
        if (rc != RESP_DONE) {
            break;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct outcome whole, cut;
    run(data, size, 0, &whole);
    run(data, size, size > 0 ? (size_t)data[0] % 5 + 1 : 1, &cut);
    if (whole.n != cut.n) {
        __builtin_trap();
    }
    for (int i = 0; i < whole.n; i++) {
        if (whole.rc[i] != cut.rc[i] ||
            (whole.rc[i] == RESP_DONE &&
             (whole.size[i] != cut.size[i] || whole.type[i] != cut.type[i] ||
              whole.integer[i] != cut.integer[i] || whole.count[i] != cut.count[i]))) {
            __builtin_trap();
        }
    }
    return 0;
}
