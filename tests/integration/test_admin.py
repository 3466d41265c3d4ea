"""The admin HTTP listener (legate.admin): /stats, /metrics, /healthz and
/ready against real upstreams (a redis-server, python HTTP servers) and
real clients (requests, redis-py, raw sockets); its limits and errors;
moving it by reload."""
import json
import signal
import socket
import time

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import can_connect, free_port, http_upstream, recv_all, wait_for


def admin_conf(admin_port, web_port, cache_port, prod, exp, shard, extra=""):
    return (f"legate:\n  workers: 2\n  shutdown_grace: 2s\n  admin: 127.0.0.1:{admin_port}\n"
            f"web:\n  listen: 127.0.0.1:{web_port}\n  protocol: http\n{extra}"
            f"  split:\n    arms:\n"
            f"      production: {{ weight: 80, servers: [127.0.0.1:{prod}] }}\n"
            f"      experiment: {{ weight: 20, servers: [127.0.0.1:{exp}] }}\n"
            f"  mirror: {{ percent: 100, servers: [127.0.0.1:{exp}] }}\n"
            f"cache:\n  listen: 127.0.0.1:{cache_port}\n  redis: true\n"
            f"  servers:\n    - 127.0.0.1:{shard}:1 shard1\n")


def samples(text):
    """{(name, frozenset(labels)): value}; the parser refuses malformed text."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def value(smp, name, **labels):
    return smp[(name, frozenset(labels.items()))]


def raw(port, data, timeout=10):
    """Send raw bytes, return everything the admin answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return recv_all(s)


@pytest.fixture
def site(legate, redis_server):
    """legate with an http split (+ mirror) and a redis pool, admin on."""
    prod, exp = http_upstream("production"), http_upstream("experiment")
    shard = redis_server()
    ports = [free_port() for _ in range(3)]
    lg = legate(admin_conf(*ports, prod.server_port, exp.server_port, shard.port),
                wait_addr=("127.0.0.1", ports[1]))
    yield lg, ports
    prod.shutdown()
    exp.shutdown()


def test_metrics_count_what_was_sent(site):
    lg, (admin, web, cache) = site
    arms = {"production": 0, "experiment": 0}
    with requests.Session() as s:
        for _ in range(200):
            arms[s.get(f"http://127.0.0.1:{web}/", timeout=10).text] += 1
    r = redis.Redis(port=cache)
    for i in range(30):
        r.set(f"k{i}", "v")
    r.connection_pool.disconnect()  # close() alone keeps the pool's socket
    # mirrored copies are answered in the background: wait until all are in
    url = f"http://127.0.0.1:{admin}/metrics"
    wait_for(lambda: value(samples(requests.get(url, timeout=10).text),
                           "legate_mirror_responses_total", pool="web", **{"class": "2xx"})
             == 200, what="200 mirrored responses")
    rsp = requests.get(url, timeout=10)
    assert rsp.status_code == 200
    assert rsp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    smp = samples(rsp.text)
    for arm, n in arms.items():
        assert n > 0
        assert value(smp, "legate_arm_requests_total", pool="web", arm=arm) == n
        assert value(smp, "legate_arm_responses_total", pool="web", arm=arm,
                     **{"class": "2xx"}) == n
        assert value(smp, "legate_arm_latency_seconds_count", pool="web", arm=arm) == n
        assert value(smp, "legate_arm_latency_seconds_bucket", pool="web", arm=arm,
                     le="+Inf") == n
        assert value(smp, "legate_arm_latency_seconds_sum", pool="web", arm=arm) > 0
    assert value(smp, "legate_mirror_requests_total", pool="web") == 200
    assert value(smp, "legate_mirror_dropped_total", pool="web") == 0
    assert value(smp, "legate_server_requests_total", pool="cache", server="shard1") == 30
    assert value(smp, "legate_server_responses_total", pool="cache", server="shard1") == 30
    assert value(smp, "legate_server_latency_seconds_count", pool="cache", server="shard1") == 30
    # the gauge follows the redis client's close
    wait_for(lambda: value(samples(requests.get(url, timeout=10).text),
                           "legate_pool_client_connections", pool="cache") == 0,
             what="the redis client's close counted")
    # the experiment's upstream serves the arm and the mirror: two series
    exp_rows = [k for k in smp if k[0] == "legate_server_requests_total"
                and (("arm", "experiment") in k[1] or ("mirror", "true") in k[1])]
    assert len(exp_rows) == 2
    # each http server's latency histogram counts its responses
    web_lat = {dict(k[1]).get("arm", "mirror"): v for k, v in smp.items()
               if k[0] == "legate_server_latency_seconds_count"
               and dict(k[1])["pool"] == "web"}
    assert web_lat == {**arms, "mirror": 200}
    # cumulative buckets never decrease and end at the count
    for arm in arms:
        bounds = sorted((float(dict(k[1])["le"]), v) for k, v in smp.items()
                        if k[0] == "legate_arm_latency_seconds_bucket"
                        and dict(k[1]).get("arm") == arm)
        counts = [v for _, v in bounds]
        assert counts == sorted(counts) and counts[-1] == arms[arm]


def test_stats_page_is_the_stats_listener_json(site):
    lg, (admin, web, cache) = site
    requests.get(f"http://127.0.0.1:{web}/", timeout=10)
    rsp = requests.get(f"http://127.0.0.1:{admin}/stats", timeout=10)
    assert rsp.status_code == 200 and rsp.headers["Content-Type"] == "application/json"
    page = rsp.json()
    with socket.create_connection(("127.0.0.1", lg.stats_port), timeout=10) as s:
        listener = json.loads(recv_all(s))
    for d in (page, listener):
        d.pop("uptime"), d.pop("timestamp")
    assert page["web"]["arms"]["production"]["requests"] + \
        page["web"]["arms"]["experiment"]["requests"] == 1
    assert page.keys() == listener.keys()
    assert page["cache"] == listener["cache"]


def unique_keys(pairs):
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys in {keys}"
    return dict(pairs)


def test_stats_server_keys_are_unique(site):
    """The experiment's upstream serves its arm and the mirror: two server
    rows, keyed by owner then address, never the same key twice."""
    lg, (admin, web, cache) = site
    text = requests.get(f"http://127.0.0.1:{admin}/stats", timeout=10).text
    page = json.loads(text, object_pairs_hook=unique_keys)
    rows = {k.split("/", 1)[0]: k.split("/", 1)[1] for k in page["web"] if "/" in k}
    assert rows.keys() == {"production", "experiment", "mirror"}
    assert rows["mirror"] == rows["experiment"] != rows["production"]
    assert "latency_p99_us" in page["web"]["mirror/" + rows["mirror"]]
    assert "shard1" in page["cache"]  # nutcracker's pools keep nutcracker's keys


def test_healthz_ready_head_and_query(site):
    lg, (admin, web, cache) = site
    base = f"http://127.0.0.1:{admin}"
    rsp = requests.get(base + "/healthz", timeout=10)
    assert (rsp.status_code, rsp.text) == (200, "ok\n")
    assert rsp.headers["Connection"] == "close"
    rsp = requests.get(base + "/ready?verbose=1", timeout=10)
    assert (rsp.status_code, rsp.text) == (200, "ready\n")
    head = requests.head(base + "/metrics", timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["Content-Length"]) > 1000


def test_ready_follows_health_checks(legate):
    """/ready is 503 while a pool has no server up, naming it, and 200 again
    once health checks let one back in."""
    up = http_upstream("a")
    up.health_status = 503
    admin, web = free_port(), free_port()
    conf = (f"legate:\n  workers: 2\n  shutdown_grace: 2s\n  admin: 127.0.0.1:{admin}\n"
            f"web:\n  listen: 127.0.0.1:{web}\n  protocol: http\n"
            f"  health_check: {{ path: /healthz, interval: 100ms, timeout: 300ms, fall: 1, "
            f"rise: 1 }}\n"
            f"  servers:\n    - 127.0.0.1:{up.server_port}\n")
    lg = legate(conf, wait_addr=("127.0.0.1", web))
    url = f"http://127.0.0.1:{admin}/ready"
    try:
        wait_for(lambda: requests.get(url, timeout=10).status_code == 503, what="not ready")
        rsp = requests.get(url, timeout=10)
        assert rsp.text == "pool 'web': no server up\n"
        smp = samples(requests.get(f"http://127.0.0.1:{admin}/metrics", timeout=10).text)
        # a pool without a split has one arm, "default"
        assert value(smp, "legate_server_up", pool="web", arm="default",
                     server=f"127.0.0.1:{up.server_port}") == 0
        up.health_status = 200
        wait_for(lambda: requests.get(url, timeout=10).status_code == 200, what="ready again")
        assert requests.get(url, timeout=10).text == "ready\n"
    finally:
        up.shutdown()


@pytest.mark.parametrize("request_bytes,status", [
    (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"POST /stats HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
    (b"GET /stats HTTP/1.1\r\nHost : x\r\n\r\n", 400),          # space before the colon
    (b"GET /stats HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),  # obs-fold
    (b"GET /stats\x00 HTTP/1.1\r\n\r\n", 400),
    (b"BREW /stats HTTP/1.1\r\n\r\n", 400),
    (b"GET /" + b"a" * 2048 + b" HTTP/1.1\r\n\r\n", 414),          # target over ADMIN_LINE_MAX
    (b"GET /stats HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),  # over ADMIN_HEAD_MAX
])
def test_bad_requests_get_their_status(site, request_bytes, status):
    lg, (admin, web, cache) = site
    answer = raw(admin, request_bytes)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    assert b"Connection: close\r\n" in answer
    if status == 405:
        assert b"Allow: GET, HEAD\r\n" in answer
    # and the listener still serves
    assert requests.get(f"http://127.0.0.1:{admin}/healthz", timeout=10).status_code == 200


def test_head_just_under_the_limits_is_served(site):
    lg, (admin, web, cache) = site
    target = b"/healthz?" + b"a" * (2048 - len(b"/healthz?"))
    assert len(target) == 2048
    line = b"GET " + target + b" HTTP/1.1\r\n"
    answer = raw(admin, line + b"Host: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    head = b"GET /healthz HTTP/1.1\r\n"
    filler = b"X: " + b"a" * (8192 - len(head) - len(b"X: \r\n\r\n")) + b"\r\n\r\n"
    assert len(head + filler) == 8192
    assert raw(admin, head + filler).startswith(b"HTTP/1.1 200 ")


def test_slow_client_is_cut_off_and_others_served(site):
    """A client that never finishes its head is closed after the admin's
    5 s; meanwhile others are answered."""
    lg, (admin, web, cache) = site
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", admin), timeout=15)
    s.sendall(b"GET /stats HTTP/1.1\r\n")
    assert requests.get(f"http://127.0.0.1:{admin}/healthz", timeout=10).status_code == 200
    assert s.recv(100) == b""  # closed without an answer
    assert 4.5 < time.monotonic() - t0 < 12
    s.close()


def test_connection_limit_holds(site):
    """The 33rd simultaneous client is closed at once; the 32 are served.
    Refusals are logged at most once a second, not once each."""
    lg, (admin, web, cache) = site
    held = [socket.create_connection(("127.0.0.1", admin), timeout=10) for _ in range(32)]
    try:
        t0 = time.monotonic()
        for _ in range(30):
            extra = socket.create_connection(("127.0.0.1", admin), timeout=10)
            extra.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            try:
                assert extra.recv(100) == b""
            except ConnectionResetError:
                pass
            extra.close()
        seconds = time.monotonic() - t0
        wait_for(lambda: "admin: too many clients" in lg.log(), what="the refusal logged")
        lines = lg.log().count("admin: too many clients")
        assert 1 <= lines <= 1 + int(seconds), (lines, seconds)
        for s in held:
            s.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        for s in held:
            assert recv_all(s).startswith(b"HTTP/1.1 200 ")
    finally:
        for s in held:
            s.close()


def test_reload_moves_the_admin_listener(legate, tmp_path):
    a1, a2, web = free_port(), free_port(), free_port()
    up = http_upstream("a")

    def conf(admin_line):
        return (f"legate:\n  workers: 2\n  shutdown_grace: 2s\n{admin_line}"
                f"web:\n  listen: 127.0.0.1:{web}\n  protocol: http\n"
                f"  servers:\n    - 127.0.0.1:{up.server_port}\n")
    lg = legate(conf(f"  admin: 127.0.0.1:{a1}\n"), wait_addr=("127.0.0.1", web))
    try:
        assert requests.get(f"http://127.0.0.1:{a1}/healthz", timeout=10).text == "ok\n"
        lg.conf_path.write_text(conf(f"  admin: 127.0.0.1:{a2}\n"))
        lg.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: can_connect(("127.0.0.1", a2)), what="admin on the new port")
        assert requests.get(f"http://127.0.0.1:{a2}/healthz", timeout=10).text == "ok\n"
        wait_for(lambda: not can_connect(("127.0.0.1", a1)), what="old admin port closed")
        # a reload whose admin address cannot be bound keeps everything running
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        lg.conf_path.write_text(conf(f"  admin: 127.0.0.1:{busy.getsockname()[1]}\n"))
        lg.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "cannot listen for admin" in lg.log(), what="the refused reload")
        assert requests.get(f"http://127.0.0.1:{a2}/healthz", timeout=10).text == "ok\n"
        # a reload that binds its new admin address but then fails (a pool
        # address in use) lets the new admin address go again
        a3 = free_port()
        lg.conf_path.write_text(conf(f"  admin: 127.0.0.1:{a3}\n").replace(
            f"listen: 127.0.0.1:{web}", f"listen: 127.0.0.1:{busy.getsockname()[1]}"))
        lg.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: lg.log().count("failed (above)") == 2, what="the second refused reload")
        assert not can_connect(("127.0.0.1", a3))
        assert requests.get(f"http://127.0.0.1:{a2}/healthz", timeout=10).text == "ok\n"
        busy.close()
        # and without the key the listener goes away
        lg.conf_path.write_text(conf(""))
        lg.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: not can_connect(("127.0.0.1", a2)), what="admin closed")
        assert requests.get(f"http://127.0.0.1:{web}/", timeout=10).text == "a"
    finally:
        up.shutdown()


def test_admin_port_in_use_refuses_to_start(tmp_path):
    from conftest import Legate
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    web = free_port()
    lg = Legate(tmp_path, f"legate:\n  admin: 127.0.0.1:{busy.getsockname()[1]}\n"
                          f"web:\n  listen: 127.0.0.1:{web}\n  protocol: tcp\n"
                          f"  servers: [127.0.0.1:1]\n")
    lg.start()
    assert lg.proc.wait(10) == 1
    assert "cannot listen for admin" in lg.log()
    busy.close()


def test_admin_closes_when_draining(legate, echo_server):
    """Once SIGTERM starts the drain, the admin port refuses connections
    (a readiness probe fails at once) while an open session still works."""
    from conftest import recv_exactly, tcp_pool
    echo = echo_server()
    admin, port = free_port(), free_port()
    lg = legate(tcp_pool(f"127.0.0.1:{port}", [f"127.0.0.1:{echo.port}:1"],
                         legate_section=f"legate:\n  workers: 2\n  shutdown_grace: 20s\n"
                                        f"  admin: 127.0.0.1:{admin}\n"),
                wait_addr=("127.0.0.1", port))
    assert requests.get(f"http://127.0.0.1:{admin}/ready", timeout=10).status_code == 200
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"before")
    assert recv_exactly(s, 6) == b"before"
    lg.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: not can_connect(("127.0.0.1", admin)), what="admin closed by the drain")
    assert lg.proc.poll() is None  # still draining the open session
    s.sendall(b"after")
    assert recv_exactly(s, 5) == b"after"
    s.close()
