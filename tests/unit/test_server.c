/* Unit tests for the server table: applying discovered sets, draining,
 * recycling only when every worker acknowledged and nobody uses a slot. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "upstream/server.h"

#include <arpa/inet.h>
#include <string.h>

static struct server_ep ep(const char *ip, unsigned port)
{
    struct server_ep e;
    memset(&e, 0, sizeof(e));
    struct sockaddr_in *sin = (struct sockaddr_in *)&e.addr.ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &sin->sin_addr);
    e.addr.len = sizeof(*sin);
    e.addr.family = AF_INET;
    e.weight = 1;
    return e;
}

static size_t count(const struct server_table *t, enum server_state st)
{
    size_t n = 0;
    for (size_t i = 0; i < t->nslots; i++) {
        n += server_state_of(t, i) == st;
    }
    return n;
}

static void test_apply_drain_and_recycle(void **state)
{
    (void)state;
    struct conf_server statics[1];
    memset(statics, 0, sizeof(statics));
    statics[0].spec = statics[0].ident = (char *)"10.0.0.1:1";
    statics[0].weight = 1;
    struct conf_pool cp;
    memset(&cp, 0, sizeof(cp));
    cp.servers = statics;
    cp.nservers = 1;
    struct conf_discovery d;
    memset(&d, 0, sizeof(d));
    d.kind = CONF_DISC_FILE;
    d.max_endpoints = 3;
    d.first = 1;
    cp.disc = &d;
    cp.ndisc = 1;
    struct server_table t;
    assert_int_equal(server_table_init(&t, &cp, 2), 0);
    assert_int_equal(t.nslots, 4);
    assert_int_equal(count(&t, SERVER_ACTIVE), 1); /* the configured one */

    struct server_change c;
    struct server_ep set1[] = { ep("127.0.0.1", 10), ep("127.0.0.2", 10),
                                ep("127.0.0.1", 10) /* twice: once */ };
    server_table_apply(&t, 1, 3, set1, 3, &c);
    assert_int_equal(c.added, 2);
    assert_int_equal(c.refused, 0);
    assert_string_equal(t.servers[1].spec, "127.0.0.1:10");
    assert_string_equal(t.servers[1].ident, "127.0.0.1:10");
    unsigned long v1 = atomic_load(&t.version);
    assert_true(v1 > 0);

    /* Same set again: nothing changes, no new version. */
    server_table_apply(&t, 1, 3, set1, 2, &c);
    assert_int_equal(c.kept, 2);
    assert_int_equal(c.added + c.removed, 0);
    assert_int_equal(atomic_load(&t.version), v1);

    /* .1 leaves, .3 and .4 come: .1 drains, one slot is left for two. */
    struct server_ep set2[] = { ep("127.0.0.2", 10), ep("127.0.0.3", 10), ep("127.0.0.4", 10) };
    server_table_apply(&t, 1, 3, set2, 3, &c);
    assert_int_equal(c.removed, 1);
    assert_int_equal(c.kept, 1);
    assert_int_equal(c.added, 1);
    assert_int_equal(c.refused, 1);
    assert_int_equal(server_state_of(&t, 1), SERVER_DRAINING);
    unsigned long v2 = atomic_load(&t.version);

    /* Not recycled until both workers acknowledged and nobody uses it. */
    atomic_store(&t.users[1], 1);
    atomic_store(&t.acked[0], v2);
    assert_int_equal(server_table_reclaim(&t), 1);
    atomic_store(&t.acked[1], v2);
    assert_int_equal(server_table_reclaim(&t), 1); /* still used */
    atomic_store(&t.users[1], 0);
    assert_int_equal(server_table_reclaim(&t), 0);
    assert_int_equal(server_state_of(&t, 1), SERVER_FREE);

    /* Applied again, the refused one gets the free slot (a new fill). */
    unsigned gen = atomic_load(&t.gen[1]);
    server_table_apply(&t, 1, 3, set2, 3, &c);
    assert_int_equal(c.added, 1);
    assert_int_equal(c.refused, 0);
    assert_int_equal(count(&t, SERVER_ACTIVE), 4);
    assert_true(atomic_load(&t.gen[1]) != gen);

    /* A draining endpoint that comes back is taken back in its slot. */
    struct server_ep set3[] = { ep("127.0.0.2", 10), ep("127.0.0.3", 10) };
    server_table_apply(&t, 1, 3, set3, 2, &c);
    assert_int_equal(c.removed, 1);
    size_t drained = 0;
    for (size_t i = 1; i < t.nslots; i++) {
        drained = server_state_of(&t, i) == SERVER_DRAINING ? i : drained;
    }
    assert_true(drained > 0);
    gen = atomic_load(&t.gen[drained]);
    server_table_apply(&t, 1, 3, set2, 3, &c);
    assert_int_equal(server_state_of(&t, drained), SERVER_ACTIVE);
    assert_int_equal(atomic_load(&t.gen[drained]), gen); /* same fill: connections stay */

    /* The configured server is never touched. */
    assert_int_equal(server_state_of(&t, 0), SERVER_ACTIVE);
    assert_string_equal(t.servers[0].spec, "10.0.0.1:1");
    server_table_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_drain_and_recycle),
    };
    return cmocka_run_group_tests_name("server", tests, NULL, NULL);
}
