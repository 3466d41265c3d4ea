/* Unit tests for conf: values, a full config, and every error path naming
 * the right file:line:column and key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "conf/conf.h"
#include "conf/conf_tree.h"
#include "conf/conf_value.h"

#include <stdio.h>
#include <string.h>

static struct conf *load_ok(const char *yaml)
{
    struct conf *cf = NULL;
    char err[512] = "";
    int rc = conf_load_buffer("t.yml", yaml, strlen(yaml), &cf, err, sizeof(err));
    if (rc != 0) {
        print_error("unexpected error: %s\n", err);
    }
    assert_int_equal(rc, 0);
    assert_non_null(cf);
    return cf;
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int ok;
        uint64_t ms;
    } cases[] = {
        { "400", 1, 400 }, { "500ms", 1, 500 }, { "5s", 1, 5000 }, { "2m", 1, 120000 },
        { "1h", 1, 3600000 }, { "0", 1, 0 }, { "", 0, 0 }, { "5 s", 0, 0 },
        { "-1", 0, 0 }, { "1.5s", 0, 0 }, { "5d", 0, 0 }, { "s", 0, 0 },
        { "99999999999999999999999", 0, 0 }, { "200h", 0, 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t ms = 0;
        const char *why = NULL;
        int rc = conf_value_duration(cases[i].in, &ms, &why);
        assert_int_equal(rc, cases[i].ok ? 0 : -1);
        if (cases[i].ok) {
            assert_int_equal(ms, cases[i].ms);
        } else {
            assert_non_null(why);
        }
    }
}

static void test_sizes(void **state)
{
    (void)state;
    uint64_t v;
    const char *why;
    assert_int_equal(conf_value_size("512", 1ull << 40, &v, &why), 0);
    assert_int_equal(v, 512);
    assert_int_equal(conf_value_size("64kb", 1ull << 40, &v, &why), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(conf_value_size("512mb", 1ull << 40, &v, &why), 0);
    assert_int_equal(v, 512ull << 20);
    assert_int_equal(conf_value_size("2gb", 1ull << 40, &v, &why), 0);
    assert_int_equal(v, 2ull << 30);
    assert_int_equal(conf_value_size("5gb", 4ull << 30, &v, &why), -1);
    assert_int_equal(conf_value_size("1.5mb", 1ull << 40, &v, &why), -1);
    assert_int_equal(conf_value_size("mb", 1ull << 40, &v, &why), -1);
}

static void test_server_lines(void **state)
{
    (void)state;
    struct conf_server s;
    char buf[256];
    const char *why;
    assert_int_equal(conf_value_server("127.0.0.1:7001:3 shard1", &s, buf, sizeof(buf), &why), 0);
    assert_int_equal(s.weight, 3);
    assert_string_equal(s.name, "shard1");
    assert_string_equal(s.spec, "127.0.0.1:7001:3");
    assert_int_equal(s.addr.family, AF_INET);
    conf_server_clear(&s);
    assert_int_equal(conf_value_server("[::1]:7001", &s, buf, sizeof(buf), &why), 0);
    assert_int_equal(s.weight, 1);
    assert_null(s.name);
    assert_int_equal(s.addr.family, AF_INET6);
    conf_server_clear(&s);
    assert_int_equal(conf_value_server("/tmp/x.sock:2", &s, buf, sizeof(buf), &why), 0);
    assert_int_equal(s.addr.family, AF_UNIX);
    assert_int_equal(s.weight, 2);
    conf_server_clear(&s);
    const char *bad[] = { "127.0.0.1", "127.0.0.1:x", "127.0.0.1:7001:0", "127.0.0.1:7001:w",
                          "127.0.0.1:99999:1", "::1:7001", "127.0.0.1:7001:1 a b", ":7001" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(conf_value_server(bad[i], &s, buf, sizeof(buf), &why), -1);
    }
}

static void test_full_config(void **state)
{
    (void)state;
    struct conf *cf = load_ok(
        "legate:\n"
        "  workers: 3\n"
        "  shutdown_grace: 5s\n"
        "  scheduling: normal\n"
        "  priority: 3\n"
        "db:\n"
        "  listen: /tmp/legate-test.sock 0660\n"
        "  protocol: tcp\n"
        "  balance: least_connections\n"
        "  retries: 4\n"
        "  client_connections: 100\n"
        "  timeout: { connect: 250ms, idle: 300s }\n"
        "  servers:\n"
        "    - 127.0.0.1:5432:2 primary\n"
        "    - \"[::1]:5432:1\"\n"
        "web:\n"
        "  listen: \"[::1]:8080\"\n"
        "  protocol: tcp\n"
        "  timeout: 700\n"
        "  servers: [127.0.0.1:9000]\n");
    assert_int_equal(cf->workers, 3);
    assert_int_equal(cf->shutdown_grace, 5000);
    assert_int_equal(cf->scheduling, CONF_SCHED_NORMAL);
    assert_int_equal(cf->priority, 3);
    assert_int_equal(cf->npools, 2);
    const struct conf_pool *db = &cf->pools[0];
    assert_string_equal(db->name, "db");
    assert_int_equal(db->listen.family, AF_UNIX);
    assert_int_equal(db->listen_mode, 0660);
    assert_int_equal(db->balance, CONF_BAL_LEAST_CONN);
    assert_int_equal(db->retries, 4);
    assert_int_equal(db->client_connections, 100);
    assert_int_equal(db->timeout_connect, 250);
    assert_int_equal(db->timeout_idle, 300000);
    assert_int_equal(db->nservers, 2);
    assert_int_equal(db->servers[0].weight, 2);
    assert_int_equal(db->servers[0].line, 14);
    const struct conf_pool *web = &cf->pools[1];
    assert_int_equal(web->listen.family, AF_INET6);
    assert_int_equal(web->timeout_connect, 700); /* tcp: one number bounds connect */
    assert_int_equal(web->balance, CONF_BAL_ROUND_ROBIN);
    /* references */
    assert_ptr_equal(conf_get(cf), cf);
    conf_put(cf);
    conf_put(cf);
}

/* Each broken config, where the error must point, and a phrase it holds. */
static const struct {
    const char *yaml;
    const char *where;
    const char *says;
} bad_configs[] = {
    { "", "t.yml:1:1", "no pools" },
    { "a: [1, 2", "t.yml:", "YAML syntax error" },
    { "- 1\n- 2\n", "t.yml:1:1", "expected a mapping of pool names" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  servers: [127.0.0.1:2]\n  bogus: 1\n",
      "t.yml:5:3", "key 'bogus': unknown key" },
    { "p:\n  protocol: tcp\n  servers: [127.0.0.1:2]\n", "t.yml:1:1", "key 'listen': missing" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n", "t.yml:1:1", "key 'servers': missing" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  servers: []\n", "t.yml:4:12",
      "the list is empty" },
    { "p:\n  listen: nowhere\n  protocol: tcp\n  servers: [127.0.0.1:2]\n", "t.yml:2:11",
      "key 'listen'" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  timeout: soon\n  servers: [127.0.0.1:2]\n",
      "t.yml:4:12", "key 'timeout': expected a duration" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  timeout: { connect: 1s, read: 2s }\n"
      "  servers: [127.0.0.1:2]\n", "t.yml:4:27", "unknown phase 'read'" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  timeout: { connect: 1x }\n"
      "  servers: [127.0.0.1:2]\n", "t.yml:4:23", "key 'connect': unknown duration unit" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: ftp\n  servers: [127.0.0.1:2]\n", "t.yml:3:13",
      "unknown value 'ftp'" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  balance: fastest\n  servers: [127.0.0.1:2]\n",
      "t.yml:4:12", "key 'balance': unknown value 'fastest'" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  servers:\n    - 127.0.0.1:2:1\n"
      "    - 127.0.0.1:3:zero\n", "t.yml:6:7", "weight must be" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  servers:\n    - 127.0.0.1:2:1 a\n"
      "    - 127.0.0.1:3:1 a\n", "t.yml:6:7", "server name 'a' used twice" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  hash: md5\n  servers: [127.0.0.1:2]\n",
      "t.yml:4:3", "key 'hash': applies only to redis and memcache pools" },
    { "p:\n  listen: 127.0.0.1:1\n  redis: true\n  hash: sha1\n  servers: [127.0.0.1:2:1]\n",
      "t.yml:4:9", "key 'hash': unknown value 'sha1'" },
    { "p:\n  listen: 127.0.0.1:1\n  redis: true\n  hash_tag: \"{\"\n  servers: [127.0.0.1:2:1]\n",
      "t.yml:4:13", "key 'hash_tag'" },
    { "p:\n  listen: 127.0.0.1:1\n  redis: maybe\n  servers: [127.0.0.1:2:1]\n", "t.yml:3:10",
      "key 'redis': expected true or false" },
    { "p:\n  listen: 127.0.0.1:1\n  redis: true\n  server_connections: 0\n"
      "  servers: [127.0.0.1:2:1]\n", "t.yml:4:23", "value out of range" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: http\n  servers: [127.0.0.1:2:1]\n"
      "  split:\n    arms:\n      a: { servers: [127.0.0.1:3] }\n", "t.yml:1:1",
      "takes its servers from split.arms" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: http\n  split:\n    arms:\n"
      "      a: { weight: 0, servers: [127.0.0.1:3] }\n", "t.yml:6:7",
      "every arm has weight 0" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: http\n  split:\n    sticky: { ip: true }\n"
      "    arms:\n      a: { servers: [127.0.0.1:3] }\n", "t.yml:5:15", "unknown value 'ip'" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: http\n  split:\n    arms:\n"
      "      a: { weight: 1 }\n", "t.yml:6:7", "arm 'a' has no servers" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: http\n  split:\n    arms:\n"
      "      mirror: { servers: [127.0.0.1:3] }\n", "t.yml:6:7",
      "key 'arms': the arm name 'mirror' is reserved" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: http\n  split:\n    arms:\n"
      "      a: { servers: [127.0.0.1:3] }\n      a: { servers: [127.0.0.1:4] }\n",
      "t.yml:7:7", "duplicate key 'a'" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: http\n  servers: [127.0.0.1:2:1]\n"
      "  mirror: { percent: 101, servers: [127.0.0.1:3] }\n", "t.yml:5:22",
      "out of range" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: http\n  servers: [127.0.0.1:2:1]\n"
      "  split:\n    weights: 3\n", "t.yml:6:5", "unknown key in split" },
    { "p:\n  listen: 127.0.0.1:1\n  redis: true\n  timeout: { header: 1s }\n"
      "  servers: [127.0.0.1:2:1]\n", "t.yml:4:14", "unknown phase 'header'" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: http\n  servers: [127.0.0.1:2:1]\n"
      "  split:\n    override_header: \"X Arm\"\n    arms:\n      a: { servers: [127.0.0.1:3] }\n",
      "t.yml:6:22", "expected a name" },
    { "p:\n  listen: 127.0.0.1:1\n  redis: true\n  auto_eject_hosts: maybe\n"
      "  servers: [127.0.0.1:2:1]\n", "t.yml:4:21", "key 'auto_eject_hosts': expected true" },
    { "p:\n  listen: 127.0.0.1:1\n  redis: true\n  limits: { bulk: 10tb }\n"
      "  servers: [127.0.0.1:2:1]\n", "t.yml:4:19", "key 'bulk': unknown size unit" },
    { "p:\n  listen: 127.0.0.1:1\n  redis: true\n  limits: { args: 0 }\n"
      "  servers: [127.0.0.1:2:1]\n", "t.yml:4:19", "key 'args'" },
    { "p:\n  listen: 127.0.0.1:1\n  redis: true\n  limits: { keys: 5 }\n"
      "  servers: [127.0.0.1:2:1]\n", "t.yml:4:13", "unknown limit 'keys'" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  limits: { args: 5 }\n"
      "  servers: [127.0.0.1:2:1]\n", "t.yml:4:3", "applies only to redis and memcache pools" },
    { "p:\n  listen: 127.0.0.1:1\n  redis: true\n  server_retry_timeout: soon\n"
      "  servers: [127.0.0.1:2:1]\n", "t.yml:4:25", "key 'server_retry_timeout'" },
    { "p:\n  listen: 127.0.0.1:1\n  redis: true\n  redis_user: app\n"
      "  servers: [127.0.0.1:2:1]\n", "t.yml:4:15", "key 'redis_user': needs redis_auth" },
    { "p:\n  listen: 127.0.0.1:1\n  redis: true\n  redis_auth: \"\"\n"
      "  servers: [127.0.0.1:2:1]\n", "t.yml:4:15", "expected a password" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  redis_auth: pw\n"
      "  servers: [127.0.0.1:2:1]\n", "t.yml:4:3", "applies only to redis pools" },
    { "p:\n  listen: 127.0.0.1:1\n  redis: true\n  servers:\n    - 127.0.0.1:2:1\n"
      "    - 127.0.0.1:2:1\n", "t.yml:6:7", "server address '127.0.0.1:2' used twice (line 5)" },
    { "p:\n  listen: 127.0.0.1:1\n  redis: false\n  redis_db: 1\n  servers: [127.0.0.1:2:1]\n",
      "t.yml:4:3", "key 'redis_db': applies only to redis pools, this pool is memcache" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  protocol: tcp\n  servers: [127.0.0.1:2]\n",
      "t.yml:4:3", "duplicate key 'protocol' (first at line 3)" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  redis: true\n  servers: [127.0.0.1:2]\n",
      "t.yml:4:10", "either 'protocol' or 'redis'" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  discovery: { dns: svc }\n",
      "t.yml:4:21", "key 'dns': expected NAME:PORT" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  discovery: { dns: a:1, file: /x }\n",
      "t.yml:4:32", "key 'file': one source per pool" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  discovery: { interval: 1s }\n",
      "t.yml:4:14", "no source" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  discovery: { dns_srv: \"a b\" }\n",
      "t.yml:4:25", "is not a DNS name" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n"
      "  discovery: { dns: a:1, resolvers: [dns.example] }\n",
      "t.yml:4:38", "key 'resolvers': expected an IP address" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n"
      "  discovery: { file: /x, resolvers: [127.0.0.1] }\n",
      "t.yml:4:37", "applies only to dns and dns_srv" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n"
      "  discovery: { dns: a:1, max_endpoints: 0 }\n", "t.yml:4:41", "key 'max_endpoints'" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  discovery: { dns: a:1, ttl: 3 }\n",
      "t.yml:4:26", "unknown key 'ttl'" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: http\n  discovery: { dns: a:1 }\n  split:\n"
      "    arms:\n      a: { servers: [127.0.0.1:3] }\n", "t.yml:1:1",
      "put discovery in split.arms.NAME" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: http\n  split:\n    arms:\n"
      "      a: { discovery: { dns: x } }\n", "t.yml:6:30", "expected NAME:PORT" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  health_check: { kind: ping }\n"
      "  servers: [127.0.0.1:2]\n", "t.yml:4:25", "unknown value 'ping'" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  health_check: { interval: 0s }\n"
      "  servers: [127.0.0.1:2]\n", "t.yml:4:29", "key 'interval': must be between" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  health_check: { fall: 0 }\n"
      "  servers: [127.0.0.1:2]\n", "t.yml:4:25", "key 'fall'" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  health_check: { every: 1s }\n"
      "  servers: [127.0.0.1:2]\n", "t.yml:4:19", "unknown key 'every'" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  health_check: { path: /h }\n"
      "  servers: [127.0.0.1:2]\n", "t.yml:1:1", "path applies only to kind: http" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: http\n  health_check: { path: \"/a b\" }\n"
      "  servers: [127.0.0.1:2]\n", "t.yml:4:25", "no spaces" },
    { "p:\n  listen: 127.0.0.1:1\n  redis: true\n  health_check: { max_ejected_percent: 101 }\n"
      "  servers: [127.0.0.1:2:1]\n", "t.yml:4:40", "key 'max_ejected_percent'" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  health_check: [tcp]\n"
      "  servers: [127.0.0.1:2]\n", "t.yml:4:17", "expected { kind" },
    { "p:\n  listen: 127.0.0.1:1\n  redis: true\n  max_connections: 5\n"
      "  servers: [127.0.0.1:2:1]\n", "t.yml:4:3", "applies only to tcp and http pools" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  max_pending: 0\n"
      "  servers: [127.0.0.1:2]\n", "t.yml:4:16", "key 'max_pending'" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  retry_budget: { percent: 120 }\n"
      "  servers: [127.0.0.1:2]\n", "t.yml:4:28", "key 'percent'" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: http\n  retry_budget: { ratio: 1 }\n"
      "  servers: [127.0.0.1:2]\n", "t.yml:4:19", "unknown key 'ratio'" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n"
      "  outlier_detection: { ejection_time: 10s, max_ejection_time: 1s }\n"
      "  servers: [127.0.0.1:2]\n", "t.yml:4:22", "max_ejection_time is shorter" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  outlier_detection: { failures: 0 }\n"
      "  servers: [127.0.0.1:2]\n", "t.yml:4:34", "key 'failures'" },
    { "legate:\n  workers: 0\np:\n  listen: 127.0.0.1:1\n  protocol: tcp\n"
      "  servers: [127.0.0.1:2]\n", "t.yml:2:12", "key 'workers'" },
    { "legate:\n  threads: 2\n", "t.yml:2:3", "key 'threads': unknown key in the legate section" },
    { "legate: 3\np:\n  listen: 127.0.0.1:1\n", "t.yml:1:9", "expected a mapping" },
    { "a: &x 1\n", "t.yml:1:4", "anchors are not allowed" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  servers: [127.0.0.1:2]\n"
      "q:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  servers: [127.0.0.1:2]\n", "t.yml:6:11",
      "pool 'q': key 'listen': address already used by pool 'p'" },
    { "p:\n  listen: 127.0.0.1:1 0660\n  protocol: tcp\n  servers: [127.0.0.1:2]\n",
      "t.yml:2:11", "mode applies only to a unix socket" },
    { "p:\n  listen: /tmp/x.sock 999\n  protocol: tcp\n  servers: [127.0.0.1:2]\n",
      "t.yml:2:11", "octal permission" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  retries: 99\n  servers: [127.0.0.1:2]\n",
      "t.yml:4:12", "key 'retries'" },
    { "p: [1]\n", "t.yml:1:4", "pool 'p': a pool must be a mapping" },
    { "p:\n  listen: 127.0.0.1:1\n  protocol: tcp\n  servers: { a: 1 }\n", "t.yml:4:12",
      "expected a list" },
    { "--- {}\n--- {}\n", "t.yml:2:1", "only one YAML document" },
    { "legate:\n  scheduling: fifo\np:\n  listen: 127.0.0.1:1\n  protocol: tcp\n"
      "  servers: [127.0.0.1:2]\n",
      "t.yml:2:15", "key 'scheduling': unknown value 'fifo' (one of: batch, normal, auto)" },
    { "legate:\n  priority: -21\np:\n  listen: 127.0.0.1:1\n  protocol: tcp\n"
      "  servers: [127.0.0.1:2]\n",
      "t.yml:2:13", "key 'priority': value out of range: '-21' (allowed -20..19)" },
    { "legate:\n  priority: high\np:\n  listen: 127.0.0.1:1\n  protocol: tcp\n"
      "  servers: [127.0.0.1:2]\n",
      "t.yml:2:13", "key 'priority': expected an integer: 'high'" },
    { "legate:\n  priority: --5\np:\n  listen: 127.0.0.1:1\n  protocol: tcp\n"
      "  servers: [127.0.0.1:2]\n",
      "t.yml:2:13", "key 'priority': expected an integer" },
};

static void test_bad_configs_name_their_line(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < sizeof(bad_configs) / sizeof(bad_configs[0]); i++) {
        struct conf *cf = NULL;
        char err[512] = "";
        int rc = conf_load_buffer("t.yml", bad_configs[i].yaml, strlen(bad_configs[i].yaml),
                                  &cf, err, sizeof(err));
        if (rc != -1 || strncmp(err, bad_configs[i].where, strlen(bad_configs[i].where)) != 0 ||
            strstr(err, bad_configs[i].says) == NULL) {
            print_error("case %zu: got rc=%d err='%s', want '%s' ... '%s'\n", i, rc, err,
                        bad_configs[i].where, bad_configs[i].says);
            failures++;
        }
        assert_null(cf);
    }
    assert_int_equal(failures, 0);
}

/* `scheduling: auto` (the default) is `normal` when every pool shards keys
 * and `batch` when any is http or tcp; an unset priority follows the
 * policy (-5 under batch, 0 under normal); what the file says wins. */
static void test_scheduling_follows_the_pools(void **state)
{
    (void)state;
    static const struct {
        const char *legate, *pools;
        unsigned policy;
        int nice;
    } cases[] = {
        { "", "redis: true", CONF_SCHED_NORMAL, 0 },
        { "", "protocol: memcache", CONF_SCHED_NORMAL, 0 },
        { "legate:\n  scheduling: auto\n", "redis: true", CONF_SCHED_NORMAL, 0 },
        { "legate:\n  workers: 1\n", "protocol: tcp", CONF_SCHED_BATCH, CONF_PRIORITY_BATCH },
        { "", "protocol: http", CONF_SCHED_BATCH, CONF_PRIORITY_BATCH },
        { "legate:\n  scheduling: batch\n", "redis: true", CONF_SCHED_BATCH, CONF_PRIORITY_BATCH },
        { "legate:\n  scheduling: normal\n", "protocol: http", CONF_SCHED_NORMAL, 0 },
        { "legate:\n  priority: -5\n", "redis: true", CONF_SCHED_NORMAL, -5 },
        { "legate:\n  priority: 3\n", "protocol: tcp", CONF_SCHED_BATCH, 3 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "%sa:\n  listen: 127.0.0.1:1\n  redis: true\n  servers: [127.0.0.1:2:1]\n"
                 "b:\n  listen: 127.0.0.1:3\n  %s\n  servers: [127.0.0.1:4:1]\n",
                 cases[i].legate, cases[i].pools);
        struct conf *cf = load_ok(text);
        if (cf->scheduling != cases[i].policy || cf->priority != cases[i].nice) {
            fail_msg("case %zu: policy %u nice %d, want %u and %d", i, cf->scheduling,
                     cf->priority, cases[i].policy, cases[i].nice);
        }
        conf_put(cf);
    }
}

/* Regression (found by fuzz_conf): the NUL-byte error path used the node
 * after freeing it. */
static void test_health_check_defaults(void **state)
{
    (void)state;
    struct conf *cf = load_ok(
        "r:\n  listen: 127.0.0.1:1\n  health_check: true\n  redis: true\n"
        "  servers: [127.0.0.1:2:1]\n"
        "h:\n  listen: 127.0.0.1:3\n  protocol: http\n"
        "  health_check: { interval: 500ms, rise: 1, max_ejected_percent: 0 }\n"
        "  servers: [127.0.0.1:4]\n"
        "t:\n  listen: 127.0.0.1:5\n  protocol: tcp\n  servers: [127.0.0.1:6]\n");
    assert_int_equal(cf->scheduling, CONF_SCHED_BATCH); /* no legate: section, */
    assert_int_equal(cf->priority, CONF_PRIORITY_BATCH); /* and http and tcp pools */
    const struct conf_health *r = &cf->pools[0].health, *h = &cf->pools[1].health;
    assert_int_equal(r->kind, CONF_CHECK_REDIS); /* the kind follows the protocol, */
    assert_int_equal(r->interval, 2000);         /* whatever the order of the keys */
    assert_int_equal(r->timeout, 1000);
    assert_int_equal(r->rise, 2);
    assert_int_equal(r->fall, 3);
    assert_int_equal(r->max_ejected_percent, 50);
    assert_int_equal(h->kind, CONF_CHECK_HTTP);
    assert_string_equal(h->path, "/");
    assert_int_equal(h->interval, 500);
    assert_int_equal(h->rise, 1);
    assert_int_equal(h->max_ejected_percent, 0);
    assert_int_equal(cf->pools[2].health.kind, CONF_CHECK_NONE);
    conf_put(cf);
}

/* twemproxy's default protocol is memcache; `limits` apply to it too. */
static void test_memcache_is_the_default(void **state)
{
    (void)state;
    struct conf *cf = load_ok("m:\n  listen: 127.0.0.1:1\n  limits: { inline: 2kb }\n"
                              "  servers: [127.0.0.1:2:1]\n");
    assert_int_equal(cf->pools[0].proto, CONF_PROTO_MEMCACHE);
    assert_int_equal(cf->pools[0].limit_inline, 2048);
    assert_int_equal(cf->pools[0].health.kind, CONF_CHECK_NONE);
    conf_put(cf);
}

static void test_discovery(void **state)
{
    (void)state;
    struct conf *cf = load_ok(
        "a:\n  listen: 127.0.0.1:1\n  protocol: tcp\n"
        "  discovery: { dns: db.svc.local:5432, resolvers: [127.0.0.1:5353, \"[::1]\"] }\n"
        "b:\n  listen: 127.0.0.1:2\n  redis: true\n  servers: [127.0.0.1:9:1]\n"
        "  discovery: { dns_srv: _redis._tcp.cache, interval: 250ms, max_endpoints: 8 }\n"
        "c:\n  listen: 127.0.0.1:3\n  protocol: http\n  discovery: { file: /etc/eps }\n");
    const struct conf_discovery *a = conf_pool_discovery(&cf->pools[0], CONF_DISC_POOL);
    const struct conf_discovery *b = conf_pool_discovery(&cf->pools[1], CONF_DISC_POOL);
    assert_int_equal(a->kind, CONF_DISC_DNS);
    assert_string_equal(a->name, "db.svc.local");
    assert_int_equal(a->port, 5432);
    assert_string_equal(a->resolvers, "127.0.0.1:5353,[::1]:53");
    assert_int_equal(a->interval, 5000);
    assert_int_equal(a->max_endpoints, 64);
    assert_int_equal(cf->pools[0].nservers, 0); /* servers are optional with discovery */
    assert_int_equal(b->kind, CONF_DISC_SRV);
    assert_string_equal(b->name, "_redis._tcp.cache");
    assert_int_equal(b->interval, 250);
    assert_int_equal(b->max_endpoints, 8);
    assert_null(b->resolvers);
    assert_int_equal(b->first, 1); /* after the one configured server */
    assert_int_equal(cf->pools[2].disc[0].kind, CONF_DISC_FILE);
    assert_string_equal(cf->pools[2].disc[0].name, "/etc/eps");
    conf_put(cf);
    /* Split arms and the mirror each find their own servers, in slot order
     * after the configured ones. */
    cf = load_ok("w:\n  listen: 127.0.0.1:1\n  protocol: http\n  split:\n    arms:\n"
                 "      prod: { weight: 9, servers: [127.0.0.1:2], "
                 "discovery: { file: /a, max_endpoints: 4 } }\n"
                 "      exp: { weight: 1, discovery: { dns: exp.svc:80 } }\n"
                 "  mirror: { percent: 5, discovery: { file: /m, max_endpoints: 2 } }\n");
    const struct conf_pool *w = &cf->pools[0];
    assert_int_equal(w->nservers, 1);
    assert_int_equal(w->ndisc, 3);
    const struct conf_discovery *prod = conf_pool_discovery(w, 0);
    const struct conf_discovery *exp = conf_pool_discovery(w, 1);
    const struct conf_discovery *mir = conf_pool_discovery(w, CONF_DISC_MIRROR);
    assert_non_null(prod);
    assert_non_null(exp);
    assert_non_null(mir);
    assert_int_equal(prod->first, 1);
    assert_int_equal(exp->first, 5);
    assert_int_equal(mir->first, 5 + 64);
    assert_int_equal(w->arms[1].n, 0);
    assert_null(conf_pool_discovery(w, CONF_DISC_POOL));
    conf_put(cf);
}

static void test_nul_byte_in_value(void **state)
{
    (void)state;
    static const char yaml[] = "p:\n  listen: \"a\\0b\"\n";
    struct conf *cf = NULL;
    char err[512] = "";
    assert_int_equal(conf_load_buffer("t.yml", yaml, sizeof(yaml) - 1, &cf, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "t.yml:2:11: NUL byte in a value"));
}

static void test_depth_and_size_limits(void **state)
{
    (void)state;
    char deep[256];
    size_t off = 0;
    for (int i = 0; i < 40; i++) {
        deep[off++] = '[';
    }
    deep[off] = '\0';
    struct conf *cf = NULL;
    char err[512] = "";
    assert_int_equal(conf_load_buffer("t.yml", deep, off, &cf, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "nested too deeply"));
    static char big[CONF_MAX_FILE + 2];
    memset(big, '#', sizeof(big));
    assert_int_equal(conf_load_buffer("t.yml", big, sizeof(big), &cf, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "larger than 4 MiB"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_server_lines),
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_bad_configs_name_their_line),
        cmocka_unit_test(test_health_check_defaults),
        cmocka_unit_test(test_scheduling_follows_the_pools),
        cmocka_unit_test(test_memcache_is_the_default),
        cmocka_unit_test(test_discovery),
        cmocka_unit_test(test_nul_byte_in_value),
        cmocka_unit_test(test_depth_and_size_limits),
    };
    return cmocka_run_group_tests_name("conf", tests, NULL, NULL);
}
