/* Unit tests for fwatch: capped whole-file reads, and the watcher that
 * reports a change of content only once it has held still for one check
 * (a touch is no change; a same-size rewrite, a ConfigMap-style symlink
 * swap and a vanished file are). Real files in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/fwatch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct dir {
    char path[64];
    char file[96];
};

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static int dir_setup(void **state)
{
    struct dir *d = calloc(1, sizeof(*d));
    snprintf(d->path, sizeof(d->path), "/tmp/legate-fwatch-XXXXXX");
    if (d == NULL || mkdtemp(d->path) == NULL) {
        return -1;
    }
    snprintf(d->file, sizeof(d->file), "%s/legate.yml", d->path);
    *state = d;
    return 0;
}

static int dir_teardown(void **state)
{
    struct dir *d = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->path);
    int rc = system(cmd);
    free(d);
    return rc == 0 ? 0 : -1;
}

static void test_read_whole_capped_and_missing(void **state)
{
    struct dir *d = *state;
    char *text;
    size_t len;
    struct stat st;
    put(d->file, "hello");
    assert_int_equal(fwatch_read(d->file, 100, &text, &len, &st), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(text, "hello", 5);
    assert_int_equal(st.st_size, 5);
    free(text);
    /* over the cap: one byte more than max, so the caller can tell */
    assert_int_equal(fwatch_read(d->file, 3, &text, &len, &st), 0);
    assert_int_equal(len, 4);
    free(text);
    put(d->file, "");
    assert_int_equal(fwatch_read(d->file, 100, &text, &len, &st), 0);
    assert_int_equal(len, 0);
    free(text);
    /* a file the size hint does not describe (it reads as empty-sized) */
    assert_int_equal(fwatch_read("/proc/self/status", 1 << 20, &text, &len, &st), 0);
    assert_true(len > 100);
    assert_memory_equal(text, "Name:", 5);
    free(text);
    assert_int_equal(fwatch_read("/proc/self/status", 10, &text, &len, &st), 0);
    assert_int_equal(len, 11);
    free(text);
    unlink(d->file);
    assert_int_equal(fwatch_read(d->file, 100, &text, &len, &st), -1);
    assert_int_equal(errno, ENOENT);
    assert_null(text);
}

static void test_a_change_is_reported_once_it_held_still(void **state)
{
    struct dir *d = *state;
    struct fwatch w;
    put(d->file, "version: 1\n");
    fwatch_init(&w, d->file, 1 << 20);
    const struct fwatch_content *c = fwatch_take(&w);
    assert_int_equal(c->err, 0);
    assert_int_equal(c->len, 11);
    assert_false(fwatch_settled(&w));
    /* a touch changes no byte */
    assert_int_equal(utimensat(AT_FDCWD, d->file, NULL, 0), 0);
    assert_false(fwatch_settled(&w));
    /* the same size, the same second: still a change */
    put(d->file, "version: 2\n");
    assert_false(fwatch_settled(&w)); /* seen once: maybe still being written */
    assert_true(fwatch_settled(&w));
    assert_memory_equal(w.tried.text, "version: 2\n", 11);
    assert_false(fwatch_settled(&w));
    /* still changing at every check: not reported until it stops */
    put(d->file, "version: 3\n");
    assert_false(fwatch_settled(&w));
    put(d->file, "version: 3, longer\n");
    assert_false(fwatch_settled(&w));
    assert_true(fwatch_settled(&w));
    assert_memory_equal(w.tried.text, "version: 3, longer\n", 19);
    /* changed and changed back before the next check: nothing to do */
    put(d->file, "version: 4\n");
    assert_false(fwatch_settled(&w));
    put(d->file, "version: 3, longer\n");
    assert_false(fwatch_settled(&w));
    assert_false(fwatch_settled(&w));
    fwatch_fini(&w);
}

static void test_symlink_swap_and_a_vanished_file(void **state)
{
    struct dir *d = *state;
    /* kubelet's layout: file -> ..data/file, ..data -> a versioned folder,
     * swapped by renaming a new ..data link over the old one */
    char v1[128], v2[128], data[128], tmp[128], f1[160], f2[160];
    snprintf(v1, sizeof(v1), "%s/v1", d->path);
    snprintf(v2, sizeof(v2), "%s/v2", d->path);
    snprintf(data, sizeof(data), "%s/..data", d->path);
    snprintf(tmp, sizeof(tmp), "%s/..data_tmp", d->path);
    snprintf(f1, sizeof(f1), "%s/legate.yml", v1);
    snprintf(f2, sizeof(f2), "%s/legate.yml", v2);
    assert_int_equal(mkdir(v1, 0700), 0);
    assert_int_equal(mkdir(v2, 0700), 0);
    put(f1, "arms: 90/10\n");
    put(f2, "arms: 50/50\n");
    assert_int_equal(symlink("v1", data), 0);
    assert_int_equal(symlink("..data/legate.yml", d->file), 0);
    struct fwatch w;
    fwatch_init(&w, d->file, 1 << 20);
    assert_memory_equal(fwatch_take(&w)->text, "arms: 90/10\n", 12);
    assert_int_equal(symlink("v2", tmp), 0);
    assert_int_equal(rename(tmp, data), 0);
    assert_false(fwatch_settled(&w));
    assert_true(fwatch_settled(&w));
    assert_memory_equal(w.tried.text, "arms: 50/50\n", 12);
    /* gone: a content of its own, reported once it stays gone */
    assert_int_equal(unlink(d->file), 0);
    assert_false(fwatch_settled(&w));
    assert_true(fwatch_settled(&w));
    assert_int_equal(w.tried.err, ENOENT);
    assert_false(fwatch_settled(&w)); /* and not again while it stays gone */
    assert_int_equal(symlink("..data/legate.yml", d->file), 0);
    assert_false(fwatch_settled(&w));
    assert_true(fwatch_settled(&w));
    assert_int_equal(w.tried.err, 0);
    /* SIGHUP's read takes whatever is there and forgets a pending change */
    put(f2, "arms: 0/100\n");
    assert_false(fwatch_settled(&w));
    assert_memory_equal(fwatch_take(&w)->text, "arms: 0/100\n", 12);
    assert_false(fwatch_settled(&w));
    fwatch_fini(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read_whole_capped_and_missing, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_a_change_is_reported_once_it_held_still, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_symlink_swap_and_a_vanished_file, dir_setup,
                                        dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
