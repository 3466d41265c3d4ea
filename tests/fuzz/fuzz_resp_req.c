/* libFuzzer target: the RESP request parser. Parses the input as a stream
 * of pipelined requests twice — whole, and cut into uneven pieces — and
 * traps if the two disagree or an argument lies outside its request. */
#include "proto/resp.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_MSGS = 64 };

struct outcome {
    int rc[MAX_MSGS];
    uint64_t size[MAX_MSGS];
    uint32_t nargs[MAX_MSGS];
    char name[MAX_MSGS][RESP_NAME_MAX + 1];
    int n;
};

static const struct resp_limits fuzz_limits = {
    .max_args = 64, .max_bulk = 1024, .max_request = 4096, .max_inline = 256,
};

static void run(const uint8_t *data, size_t size, size_t piece, struct outcome *o)
{
    struct resp_req r;
    resp_req_init(&r);
    memset(o, 0, sizeof(*o));
    size_t off = 0;
    while (off < size && o->n < MAX_MSGS) {
        int rc = RESP_AGAIN;
        while (off < size && rc == RESP_AGAIN) {
            size_t n = piece == 0 || size - off < piece ? size - off : piece;
            size_t used;
            rc = resp_req_feed(&r, data + off, n, &used, &fuzz_limits);
            if (used > n) {
                __builtin_trap();
            }
            off += used;
            piece = piece ? piece % 7 + 1 : 0; /* vary the cut */
        }
        o->rc[o->n] = rc;
        o->size[o->n] = r.size;
        o->nargs[o->n] = r.nargs;
        memcpy(o->name[o->n], r.name, sizeof(r.name));
        if (rc == RESP_DONE) {
            for (uint32_t i = 0; i < r.nargs; i++) {
                if (r.args[i].off + r.args[i].len > r.size) {
                    __builtin_trap();
                }
            }
        }
        o->n++;
        if (rc != RESP_DONE) {
            break;
        }
        resp_req_reset(&r);
    }
    resp_req_free(&r);
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
             (whole.size[i] != cut.size[i] || whole.nargs[i] != cut.nargs[i] ||
              memcmp(whole.name[i], cut.name[i], sizeof(whole.name[i])) != 0))) {
            __builtin_trap();
        }
    }
    return 0;
}
