/* libFuzzer target: the admin listener's request path (admin_parse:
 * llhttp, legate's RFC 9112 checks, the limits and the routing). The input
 * is parsed whole and cut at every tenth of its length; every cut must
 * reach the same verdict, and the verdict must be one the listener knows
 * how to answer: a complete request gets a status from the admin's set, a
 * page only with 200, and HEAD only with GET's routing. */
#include "admin/admin.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int known_status(int status)
{
    static const int known[] = { 200, 400, 404, 405, 414, 431, 501, 505 };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (known[i] == status) {
            return 1;
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct admin_req whole;
    int rc = admin_parse(buf, size, size, &whole);
    if (rc == 0) {
        if (!known_status(whole.status)) {
            abort();
        }
        if (whole.status == 200 && (unsigned)whole.page >= ADMIN_NPAGES) {
            abort();
        }
        if (whole.status != 200 && whole.why == NULL) {
            abort();
        }
    } else if (rc != -2) {
        abort();
    }
    for (size_t k = 0; k <= 10; k++) {
        struct admin_req cut;
        int rc2 = admin_parse(buf, size, size * k / 10, &cut);
        if (rc2 != rc) {
            abort();
        }
        if (rc == 0 && (cut.status != whole.status || cut.head != whole.head ||
                        (whole.status == 200 && cut.page != whole.page))) {
            abort();
        }
    }
    return 0;
}
