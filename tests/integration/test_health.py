"""Active health checks (health_check:) against real servers: a hung redis
shard leaves the ring under continuous traffic, dead tcp backends are
skipped and readmitted, http checks judge the status of a path, redis
checks authenticate, memcache checks ask for the version, and
max_ejected_percent keeps part of a pool in."""

import random
import shutil
import socket
import subprocess
import threading
import time

import redis

from conftest import can_connect, free_port, http_upstream, recv_all, stats_json, wait_for
from resp import command


def shard_pool(port, shards, extra, workers=2):
    lines = "".join(f"    - 127.0.0.1:{s.port}:1 shard{i}\n" for i, s in enumerate(shards))
    return (f"legate:\n  workers: {workers}\n  shutdown_grace: 2s\n"
            f"cache:\n  listen: 127.0.0.1:{port}\n  redis: true\n  hash: fnv1a_64\n"
            f"  distribution: ketama\n{extra}  servers:\n{lines}")


def test_hung_redis_shard_leaves_the_ring_within_interval_plus_timeout(legate, redis_server):
    """One of three shards is SIGSTOPped (it still accepts connections) under
    continuous traffic: requests already sent to it are answered with an error
    by `timeout`, and from one check interval + check timeout on, no request is
    routed to it. After SIGCONT it rejoins and gets its keys again."""
    shards = [redis_server() for _ in range(3)]
    interval, check_timeout = 1.0, 0.3
    port = free_port()
    # server_failure_limit is high so that the checks, not passive ejection,
    # take the shard out.
    lg = legate(shard_pool(port, shards,
                           "  auto_eject_hosts: true\n  server_failure_limit: 1000\n"
                           "  timeout: 500\n"
                           "  health_check: { interval: 1s, timeout: 300ms, fall: 1, rise: 1 }\n"),
                wait_addr=("127.0.0.1", port))
    results = []  # (sent at, error text or None)
    stop = threading.Event()
    hangs = []

    def traffic(seed):
        rng = random.Random(seed)
        r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
        while not stop.is_set():
            t = time.monotonic()
            try:
                r.set(f"k:{rng.randrange(1 << 30)}", "v")
                results.append((t, None))
            except redis.ResponseError as e:
                results.append((t, str(e)))
            except redis.TimeoutError as e:  # legate never answered: a hang
                hangs.append(str(e))
                return

    threads = [threading.Thread(target=traffic, args=(i,)) for i in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        shards[0].proc.send_signal(19)  # SIGSTOP
        t_stop = time.monotonic()
        time.sleep(interval + check_timeout + 2.5)
        stop.set()
        for t in threads:
            t.join(30)
    finally:
        stop.set()
        shards[0].proc.send_signal(18)  # SIGCONT
    assert not hangs, hangs
    errors = [(t, e) for t, e in results if e is not None]
    assert errors, "no request met the hung shard: the test did not test anything"
    assert all("legate" in e for _, e in errors), errors[:5]
    assert all(t >= t_stop - 0.05 for t, _ in errors), "errors before the shard hung"
    # Scheduling slack on a loaded machine: the window is interval + timeout
    # (the property) plus 0.5 s.
    deadline = t_stop + interval + check_timeout + 0.5
    late = [(round(t - t_stop, 3), e) for t, e in errors if t > deadline]
    assert not late, late[:5]
    assert sum(1 for t, e in results if e is None and t > deadline) > 100
    assert f"127.0.0.1:{shards[0].port}:1 is down" in lg.log(), lg.diagnostics()
    # Back: it rejoins and takes keys again.
    wait_for(lambda: "is up" in lg.log(), timeout=10, what="shard readmitted")
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    keys = [f"back:{i}" for i in range(60)]
    for k in keys:
        assert r.set(k, "1")
    assert any(command(shards[0].port, "EXISTS", k) == (":", b"1") for k in keys)


def test_without_ejection_a_down_shard_fails_fast(legate, redis_server):
    """auto_eject_hosts off: keys stay with their shard (twemproxy's
    placement), and while checks hold it out they get an immediate error
    instead of waiting for `timeout`."""
    shards = [redis_server() for _ in range(3)]
    port = free_port()
    lg = legate(shard_pool(port, shards, "  timeout: 5000\n"
                           "  health_check: { interval: 200ms, timeout: 200ms, fall: 1 }\n"),
                wait_addr=("127.0.0.1", port))
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    keys = [f"ff:{i * 2654435761 % 1000003}:{i}" for i in range(60)]
    for k in keys:
        r.set(k, "1")
    on0 = [k for k in keys if command(shards[0].port, "EXISTS", k) == (":", b"1")]
    on1 = [k for k in keys if k not in on0]
    assert on0 and on1
    shards[0].proc.send_signal(19)
    try:
        wait_for(lambda: "is down" in lg.log(), timeout=10, what="shard0 down")
        t = time.monotonic()
        for k in on0[:5]:
            try:
                r.get(k)
                raise AssertionError("a held-out shard answered")
            except redis.ResponseError as e:
                assert "server unavailable" in str(e)
        assert time.monotonic() - t < 2.5  # five fast failures, not five 5 s timeouts
        assert all(r.get(k) == b"1" for k in on1)
    finally:
        shards[0].proc.send_signal(18)


def tcp_conf(port, servers, check, extra=""):
    lines = "".join(f"    - 127.0.0.1:{p}\n" for p in servers)
    return (f"legate:\n  workers: 2\n  shutdown_grace: 2s\n"
            f"p:\n  listen: 127.0.0.1:{port}\n  protocol: tcp\n  retries: 0\n"
            f"  health_check: {check}\n{extra}  servers:\n{lines}")


def names_seen(port, n):
    seen = []
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            seen.append(recv_all(s).decode())
    return seen


def test_tcp_dead_backend_is_skipped_then_readmitted(legate, echo_server):
    a = echo_server(mode="name", name="a")
    b = echo_server(mode="name", name="b")
    port = free_port()
    lg = legate(tcp_conf(port, [a.port, b.port],
                         "{ kind: tcp, interval: 200ms, timeout: 200ms, fall: 2, rise: 2 }"),
                wait_addr=("127.0.0.1", port))
    assert set(names_seen(port, 20)) == {"a", "b"}
    b_port = b.port
    b.close()
    wait_for(lambda: "is down" in lg.log(), timeout=10, what="b down")
    # retries: 0, so a connection sent to b would fail: every one reaches a.
    assert names_seen(port, 40) == ["a"] * 40
    echo_server(mode="name", name="b2", port=b_port)
    wait_for(lambda: "is up" in lg.log(), timeout=10, what="b up")
    assert "b2" in names_seen(port, 20)


def test_max_ejected_percent_keeps_part_of_the_pool(legate):
    dead = [free_port(), free_port()]
    port = free_port()
    lg = legate(tcp_conf(port, dead, "{ interval: 100ms, timeout: 100ms, fall: 1, "
                         "max_ejected_percent: 50 }"), wait_addr=("127.0.0.1", port))
    wait_for(lambda: "is down" in lg.log() and "stays in" in lg.log(), timeout=10,
             what="one out, one kept")
    time.sleep(0.5)
    assert lg.log().count("is down") == 1, lg.log()


def test_http_check_judges_the_status_of_its_path(legate):
    import requests
    a, b = http_upstream("a"), http_upstream("b")
    port = free_port()
    conf = (f"legate:\n  workers: 2\n  shutdown_grace: 2s\n"
            f"web:\n  listen: 127.0.0.1:{port}\n  protocol: http\n"
            f"  health_check: {{ path: /healthz, interval: 200ms, timeout: 300ms, fall: 2, "
            f"rise: 1 }}\n"
            f"  servers:\n    - 127.0.0.1:{a.server_port}\n    - 127.0.0.1:{b.server_port}\n")
    lg = legate(conf, wait_addr=("127.0.0.1", port))
    url = f"http://127.0.0.1:{port}/"
    try:
        assert {requests.get(url, timeout=10).text for _ in range(20)} == {"a", "b"}
        b.health_status = 503
        wait_for(lambda: "is down" in lg.log(), timeout=10, what="b down")
        assert "status outside 2xx/3xx" in lg.log()
        st = stats_json(lg.stats_port)["web"]
        assert st[f"127.0.0.1:{b.server_port}"]["health"] == "down"
        assert st[f"127.0.0.1:{a.server_port}"]["health"] == "up"
        assert {requests.get(url, timeout=10).text for _ in range(30)} == {"a"}
        b.health_status = 302  # 3xx passes
        wait_for(lambda: "is up" in lg.log(), timeout=10, what="b up")
        assert "b" in {requests.get(url, timeout=10).text for _ in range(20)}
    finally:
        a.shutdown()
        b.shutdown()


def test_redis_check_authenticates(legate, redis_server):
    """With redis_auth the check sends AUTH before PING: a right password
    keeps the server in; a wrong one takes it out (error reply)."""
    srv = redis_server(args=("--requirepass", "s3cret"))
    good, bad = free_port(), free_port()
    conf = "legate:\n  workers: 1\n  shutdown_grace: 2s\n"
    for name, port, pw in (("good", good, "s3cret"), ("bad", bad, "wrong")):
        conf += (f"{name}:\n  listen: 127.0.0.1:{port}\n  redis: true\n  redis_auth: {pw}\n"
                 f"  health_check: {{ interval: 100ms, timeout: 200ms, fall: 2 }}\n"
                 f"  servers:\n    - 127.0.0.1:{srv.port}:1\n")
    lg = legate(conf, wait_addr=("127.0.0.1", good))
    wait_for(lambda: "pool 'bad'" in lg.log() and "is down" in lg.log(), timeout=10,
             what="bad pool's server down")
    assert "error reply" in lg.log()
    time.sleep(0.5)  # several more checks of the good pool
    assert "pool 'good': server" not in lg.log(), lg.log()
    r = redis.Redis(host="127.0.0.1", port=good, password="s3cret", socket_timeout=10)
    assert r.set("x", "1") and r.get("x") == b"1"


def test_memcache_check_asks_for_the_version(legate, redis_server):
    assert shutil.which("memcached"), "memcached missing: run scripts/bootstrap"
    mport = free_port()
    mc = subprocess.Popen(["memcached", "-u", "root", "-l", "127.0.0.1", "-p", str(mport),
                           "-U", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rs = redis_server()  # answers "version" with an error
    try:
        wait_for(lambda: can_connect(("127.0.0.1", mport)), what="memcached")
        port = free_port()
        lg = legate(tcp_conf(port, [mport, rs.port],
                             "{ kind: memcache, interval: 100ms, timeout: 200ms, fall: 2 }"),
                    wait_addr=("127.0.0.1", port))
        wait_for(lambda: "is down" in lg.log(), timeout=10, what="the redis server down")
        time.sleep(0.5)
        log = lg.log()
        assert f"127.0.0.1:{rs.port} is down" in log and "unexpected reply to version" in log
        assert f"127.0.0.1:{mport} is down" not in log
    finally:
        mc.terminate()
        mc.wait(10)
