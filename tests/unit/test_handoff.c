/* Unit tests for handoff: clients passed from a retiring generation's
 * boxes to their successor, with real sockets standing for the clients. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "upstream/handoff.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct woken {
    unsigned count[4];
};

static void note_wake(void *arg, unsigned worker)
{
    struct woken *w = arg;
    w->count[worker]++;
}

/* One end of a fresh socket pair (the other is closed). */
static int a_socket(void)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    return sv[0];
}

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

static struct handoff_item *item(int fd, bool authed, const char *data)
{
    struct handoff_item *it = handoff_item_new(fd, authed, strlen(data));
    assert_non_null(it);
    memcpy(it->data, data, it->len);
    return it;
}

static unsigned chain_len(struct handoff_item *it)
{
    unsigned n = 0;
    while (it != NULL) {
        struct handoff_item *next = it->next;
        close(it->fd);
        free(it);
        it = next;
        n++;
    }
    return n;
}

static void test_without_a_successor_the_client_is_closed(void **state)
{
    (void)state;
    struct handoff_hub hub;
    struct conf_pool cp = { .proto = CONF_PROTO_REDIS };
    struct handoff_box box;
    assert_int_equal(handoff_hub_init(&hub), 0);
    assert_int_equal(handoff_box_init(&box, &hub, &cp, 2), 0);
    assert_false(handoff_linked(&box));
    int fd = a_socket();
    assert_false(handoff_push(&box, item(fd, true, "")));
    assert_false(fd_open(fd));
    handoff_box_fini(&box);
    handoff_box_fini(&box); /* twice: no-op */
    handoff_hub_fini(&hub);
}

static void test_clients_go_to_the_successors_workers_in_turn(void **state)
{
    (void)state;
    struct handoff_hub hub;
    struct conf_pool old_cp = { .proto = CONF_PROTO_REDIS };
    struct conf_pool new_cp = { .proto = CONF_PROTO_REDIS };
    struct handoff_box old, succ;
    struct woken w = { { 0 } };
    assert_int_equal(handoff_hub_init(&hub), 0);
    assert_int_equal(handoff_box_init(&old, &hub, &old_cp, 1), 0);
    assert_int_equal(handoff_box_init(&succ, &hub, &new_cp, 2), 0);
    handoff_box_ready(&succ, note_wake, &w);
    handoff_link(&old, &succ);
    assert_true(handoff_linked(&old));
    int fds[3] = { a_socket(), a_socket(), a_socket() };
    assert_true(handoff_push(&old, item(fds[0], false, "*2\r\n$3\r\nGET")));
    assert_true(handoff_push(&old, item(fds[1], false, "")));
    assert_true(handoff_push(&old, item(fds[2], false, "")));
    assert_int_equal(w.count[0], 2);
    assert_int_equal(w.count[1], 1);
    struct handoff_item *q0 = handoff_take(&succ, 0);
    assert_non_null(q0);
    assert_int_equal(q0->fd, fds[0]); /* oldest first, the bytes carried */
    assert_int_equal(q0->len, 11);
    assert_memory_equal(q0->data, "*2\r\n$3\r\nGET", 11);
    assert_non_null(q0->next);
    assert_int_equal(q0->next->fd, fds[2]);
    assert_true(fd_open(fds[0]));
    assert_int_equal(chain_len(q0), 2);
    assert_int_equal(chain_len(handoff_take(&succ, 1)), 1);
    assert_null(handoff_take(&succ, 1));
    assert_null(handoff_take(&succ, 7)); /* no such worker */
    handoff_box_fini(&old);
    handoff_box_fini(&succ);
    handoff_hub_fini(&hub);
}

static void test_auth_is_kept_only_for_the_same_credentials(void **state)
{
    (void)state;
    struct handoff_hub hub;
    char pw1[] = "pw1", pw2[] = "pw2", pw1_again[] = "pw1", alice[] = "alice";
    struct conf_pool cps[] = {
        { .proto = CONF_PROTO_REDIS, .redis_auth = pw1 },
        { .proto = CONF_PROTO_REDIS, .redis_auth = pw1_again },       /* same */
        { .proto = CONF_PROTO_REDIS, .redis_auth = pw2 },             /* new password */
        { .proto = CONF_PROTO_REDIS, .redis_auth = pw1, .redis_user = alice }, /* new user */
        { .proto = CONF_PROTO_REDIS },                                /* none asked */
    };
    bool kept[] = { true, true, false, false, true };
    assert_int_equal(handoff_hub_init(&hub), 0);
    struct handoff_box from;
    assert_int_equal(handoff_box_init(&from, &hub, &cps[0], 1), 0);
    for (size_t i = 0; i < sizeof(cps) / sizeof(cps[0]); i++) {
        struct handoff_box to;
        assert_int_equal(handoff_box_init(&to, &hub, &cps[i], 1), 0);
        handoff_link(&from, &to);
        assert_true(handoff_push(&from, item(a_socket(), true, "")));
        struct handoff_item *it = handoff_take(&to, 0);
        assert_non_null(it);
        assert_int_equal(it->authed, kept[i]);
        assert_int_equal(chain_len(it), 1);
        handoff_link(&from, NULL);
        handoff_box_fini(&to);
    }
    handoff_box_fini(&from);
    handoff_hub_fini(&hub);
}

static void test_a_retiring_successor_forwards_and_leftovers_move_on(void **state)
{
    (void)state;
    struct handoff_hub hub;
    struct conf_pool cp = { .proto = CONF_PROTO_MEMCACHE };
    struct conf_pool http = { .proto = CONF_PROTO_HTTP };
    struct handoff_box g1, g2, g3, other;
    struct woken w3 = { { 0 } };
    assert_int_equal(handoff_hub_init(&hub), 0);
    assert_int_equal(handoff_box_init(&g1, &hub, &cp, 1), 0);
    assert_int_equal(handoff_box_init(&g2, &hub, &cp, 2), 0);
    assert_int_equal(handoff_box_init(&g3, &hub, &cp, 1), 0);
    assert_int_equal(handoff_box_init(&other, &hub, &http, 1), 0);
    handoff_box_ready(&g3, note_wake, &w3);
    handoff_link(&g1, &other); /* another protocol on the address: no link */
    assert_false(handoff_linked(&g1));
    handoff_link(&g1, &g2);
    int a = a_socket(), b = a_socket();
    assert_true(handoff_push(&g1, item(a, false, ""))); /* to g2's worker 0 */
    assert_true(handoff_push(&g1, item(b, false, ""))); /* to g2's worker 1 */
    /* A second reload: g2 retires before its workers took them. */
    handoff_link(&g1, &g3);
    handoff_link(&g2, &g3);
    handoff_forward(&g2, 0);          /* its worker 0 drains: passes its queue on */
    assert_int_equal(w3.count[0], 1);
    handoff_box_fini(&g2);            /* worker 1 never looked: freed, moved on */
    assert_int_equal(w3.count[0], 2);
    assert_true(fd_open(a) && fd_open(b));
    assert_int_equal(chain_len(handoff_take(&g3, 0)), 2);
    /* Shutdown: nothing to hand over to, a forwarded queue is closed. */
    int c = a_socket();
    handoff_link(&g1, &g3);
    assert_true(handoff_push(&g1, item(c, false, "")));
    handoff_link(&g3, NULL);
    handoff_forward(&g3, UINT32_MAX);
    assert_false(fd_open(c));
    handoff_box_fini(&g1);
    handoff_box_fini(&g3);
    handoff_box_fini(&other);
    handoff_hub_fini(&hub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_without_a_successor_the_client_is_closed),
        cmocka_unit_test(test_clients_go_to_the_successors_workers_in_turn),
        cmocka_unit_test(test_auth_is_kept_only_for_the_same_credentials),
        cmocka_unit_test(test_a_retiring_successor_forwards_and_leftovers_move_on),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
