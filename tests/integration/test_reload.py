"""Hot reload (SIGHUP): a new configuration takes new clients while the old
one drains — no client refused, established sessions finish, a bad file or
a listener that cannot open keeps the running configuration."""

import os
import re
import signal
import socket
import threading
import time

import redis

from conftest import free_port, recv_all, recv_exactly, tcp_pool, wait_for
from resp import Reader, encode


def name_of(addr, family=socket.AF_INET):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(addr)
        return recv_all(s).decode()


def reload(lg, conf, expect="configuration reloaded"):
    before = lg.log().count(expect)
    lg.conf_path.write_text(conf)
    lg.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: lg.log().count(expect) > before, timeout=10, what=expect)


def test_reload_switches_servers_and_pools_without_refusing_clients(legate, echo_server):
    a = echo_server(mode="name", name="a")
    b = echo_server(mode="name", name="b")
    keep = echo_server()  # echo: a long session across the reload
    port, port2, eport = free_port(), free_port(), free_port()
    conf1 = (tcp_pool(f"127.0.0.1:{port}", [f"127.0.0.1:{a.port}:1"]) +
             f"echo:\n  listen: 127.0.0.1:{eport}\n  protocol: tcp\n"
             f"  servers:\n    - 127.0.0.1:{keep.port}:1\n")
    lg = legate(conf1, wait_addr=("127.0.0.1", port))
    session = socket.create_connection(("127.0.0.1", eport), timeout=10)
    session.sendall(b"before")
    assert recv_exactly(session, 6) == b"before"
    seen, stop = [], threading.Event()

    def traffic():
        while not stop.is_set():
            try:
                seen.append(name_of(("127.0.0.1", port)))
            except OSError as e:
                seen.append(f"error: {e}")

    th = threading.Thread(target=traffic)
    th.start()
    try:
        time.sleep(0.3)
        conf2 = (tcp_pool(f"127.0.0.1:{port}", [f"127.0.0.1:{b.port}:1"]) +
                 f"more:\n  listen: 127.0.0.1:{port2}\n  protocol: tcp\n"
                 f"  servers:\n    - 127.0.0.1:{a.port}:1\n")  # the echo pool is gone
        reload(lg, conf2)
        time.sleep(0.5)
    finally:
        stop.set()
        th.join(30)
    assert [n for n in seen if n.startswith("error")] == []
    assert seen[0] == "a" and seen[-1] == "b", (seen[:3], seen[-3:])
    assert name_of(("127.0.0.1", port2)) == "a"  # the new pool listens
    # The session of the removed pool goes on with the old generation...
    session.sendall(b"after")
    assert recv_exactly(session, 5) == b"after"
    # ...whose listener is closed: nobody new gets in.
    wait_for(lambda: not _connects(eport), timeout=10, what="the removed pool's listener closed")
    session.close()
    wait_for(lambda: "previous configuration has finished draining" in lg.log(), timeout=15,
             what="the old generation gone")


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_bad_config_or_busy_port_keeps_the_running_configuration(legate, echo_server):
    a = echo_server(mode="name", name="a")
    b = echo_server(mode="name", name="b")
    port = free_port()
    good = tcp_pool(f"127.0.0.1:{port}", [f"127.0.0.1:{a.port}:1"])
    lg = legate(good, wait_addr=("127.0.0.1", port))
    reload(lg, good.replace("protocol: tcp", "protocol: tcp\n  balance: fastest"),
           expect="keeping the running configuration")
    assert "key 'balance': unknown value 'fastest'" in lg.log()
    assert name_of(("127.0.0.1", port)) == "a"
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    taken = busy.getsockname()[1]
    try:
        conf = (tcp_pool(f"127.0.0.1:{port}", [f"127.0.0.1:{b.port}:1"]) +
                f"other:\n  listen: 127.0.0.1:{taken}\n  protocol: tcp\n"
                f"  servers:\n    - 127.0.0.1:{b.port}:1\n")
        before = lg.log().count("keeping the running configuration")
        lg.conf_path.write_text(conf)
        lg.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: lg.log().count("keeping the running configuration") > before,
                 timeout=10, what="reload refused")
        assert "cannot listen on" in lg.log()
        assert name_of(("127.0.0.1", port)) == "a"  # still the first configuration
    finally:
        busy.close()
    reload(lg, tcp_pool(f"127.0.0.1:{port}", [f"127.0.0.1:{b.port}:1"]))
    wait_for(lambda: name_of(("127.0.0.1", port)) == "b", what="the good reload")


def test_unix_socket_survives_reload(legate, echo_server, tmp_path):
    a = echo_server(mode="name", name="a")
    b = echo_server(mode="name", name="b")
    path = str(tmp_path / "legate.sock")
    lg = legate(tcp_pool(path, [f"127.0.0.1:{a.port}:1"]))
    wait_for(lambda: os.path.exists(path), what="socket file")
    assert name_of(path, socket.AF_UNIX) == "a"
    reload(lg, tcp_pool(path, [f"127.0.0.1:{b.port}:1"]))
    wait_for(lambda: "previous configuration has finished draining" in lg.log(), timeout=15,
             what="old generation gone")
    assert os.path.exists(path)  # the old generation did not unlink it
    assert name_of(path, socket.AF_UNIX) == "b"


def test_redis_pipeline_in_flight_is_answered_across_reload(legate, redis_server):
    s1, s2 = redis_server(), redis_server()
    port = free_port()

    def conf(srv):
        return (f"legate:\n  workers: 2\n  shutdown_grace: 5s\n"
                f"cache:\n  listen: 127.0.0.1:{port}\n  redis: true\n"
                f"  servers:\n    - 127.0.0.1:{srv.port}:1\n")
    lg = legate(conf(s1), wait_addr=("127.0.0.1", port))
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    n = 20000
    c.sendall(b"".join(encode("SET", f"k{i}", "v") for i in range(n)))
    reload(lg, conf(s2))
    rd = Reader(c)
    assert all(rd.reply() == ("+", b"OK") for _ in range(n))  # the old generation answers
    c.close()
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    assert r.set("new", "1")
    assert redis.Redis(port=s2.port).get("new") == b"1"  # new clients: the new server


def _get(sock, rd, key):
    sock.sendall(encode("GET", key))
    return rd.reply()


def redis_conf(port, srv, extra="", workers=2):
    return (f"legate:\n  workers: {workers}\n  shutdown_grace: 5s\n"
            f"cache:\n  listen: 127.0.0.1:{port}\n  redis: true\n{extra}"
            f"  servers:\n    - 127.0.0.1:{srv.port}:1\n")


def test_reload_hands_redis_clients_over_without_closing_them(legate, redis_server):
    """Clients connected before a reload stay connected: the old generation
    hands each idle one, with a request it had half sent, to the new one,
    whose servers then answer it."""
    s1, s2 = redis_server(), redis_server()
    redis.Redis(port=s1.port).set("k", "one")
    redis.Redis(port=s2.port).set("k", "two")
    port = free_port()
    lg = legate(redis_conf(port, s1), wait_addr=("127.0.0.1", port))
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(6)]
    readers = [Reader(s) for s in socks]
    for s, rd in zip(socks, readers):
        assert _get(s, rd, "k") == b"one"
    half = encode("GET", "k")
    socks[0].sendall(half[:9])  # "*2\r\n$3\r\nG": the old generation holds it
    time.sleep(0.2)
    reload(lg, redis_conf(port, s2))
    wait_for(lambda: "the previous configuration has finished draining" in lg.log(),
             timeout=10, what="old generation gone")
    socks[0].sendall(half[9:])
    assert readers[0].reply() == b"two"  # the half-sent request completed
    for s, rd in zip(socks, readers):
        assert _get(s, rd, "k") == b"two"  # same socket, the new server
    took = re.findall(r"took over (\d+) clients", lg.log())
    assert sum(int(n) for n in took) == 6
    # and again, across a second reload that lands while nothing drains
    reload(lg, redis_conf(port, s1))
    wait_for(lambda: lg.log().count("finished draining") == 2, timeout=10,
             what="second old generation gone")
    for s, rd in zip(socks, readers):
        assert _get(s, rd, "k") == b"one"
        s.close()


def test_a_handed_over_client_keeps_auth_only_with_the_same_password(legate, redis_server):
    srv = redis_server(args=["--requirepass", "pw1"])  # legate's AUTH goes to it too
    direct = redis.Redis(port=srv.port, password="pw1")
    direct.set("k", "v")
    port = free_port()
    lg = legate(redis_conf(port, srv, "  redis_auth: pw1\n"), wait_addr=("127.0.0.1", port))
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    rd = Reader(c)
    c.sendall(encode("AUTH", "pw1"))
    assert rd.reply() == ("+", b"OK")
    reload(lg, redis_conf(port, srv, "  redis_auth: pw1\n  timeout: 400\n"))
    wait_for(lambda: "took over 1 clients" in lg.log(), timeout=10, what="handover")
    assert _get(c, rd, "k") == b"v"  # same password: still authenticated
    direct.config_set("requirepass", "pw2")
    reload(lg, redis_conf(port, srv, "  redis_auth: pw2\n"))
    wait_for(lambda: lg.log().count("took over 1 clients") == 2, timeout=10,
             what="second handover")
    kind, text = _get(c, rd, "k")
    assert kind == "-" and text.startswith(b"NOAUTH")  # a new password: AUTH again
    c.sendall(encode("AUTH", "pw2"))
    assert rd.reply() == ("+", b"OK")
    assert _get(c, rd, "k") == b"v"
    c.close()


def test_clients_pipelining_through_many_reloads_see_no_error(legate, redis_server):
    """Four clients run verified SET/GET pipelines on their own connections,
    pausing between batches, while legate reloads twelve times, often before
    the previous generation has drained: no connection is closed, no reply
    is wrong or missing. (Before handoff every reload closed each idle
    client.)"""
    srv = redis_server()
    port = free_port()
    conf = [redis_conf(port, srv), redis_conf(port, srv, "  timeout: 3000\n")]
    lg = legate(conf[0], wait_addr=("127.0.0.1", port))
    stop, errors, batches = threading.Event(), [], [0] * 4

    def client(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            rd = Reader(s)
            i = 0
            while not stop.is_set():
                keys = [f"c{n}:{i}:{j}" for j in range(8)]
                s.sendall(b"".join(encode("SET", k, k) for k in keys) +
                          b"".join(encode("GET", k) for k in keys))
                for _ in keys:
                    assert rd.reply() == ("+", b"OK")
                for k in keys:
                    assert rd.reply() == k.encode()
                batches[n] += 1
                i += 1
                time.sleep(0.005)
            s.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"client {n} after {batches[n]} batches: {e!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        for r in range(12):
            time.sleep(0.15)
            reload(lg, conf[(r + 1) % 2])
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    assert errors == []
    assert all(b > 20 for b in batches), batches
    assert "took over" in lg.log()


def test_clients_the_new_configuration_cannot_take_are_closed(legate, redis_server):
    """Handed-over clients count against the new pool's client_connections:
    past it they are closed (and logged); and a pool whose protocol changed
    on the same address takes none, so its clients close."""
    srv = redis_server()
    port = free_port()
    lg = legate(redis_conf(port, srv), wait_addr=("127.0.0.1", port))
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4)]
    readers = [Reader(s) for s in socks]
    for s, rd in zip(socks, readers):
        s.sendall(encode("PING"))
        assert rd.reply() == ("+", b"PONG")

    def answering():
        alive = []
        for s, rd in zip(socks, readers):
            try:
                s.sendall(encode("PING"))
                alive.append(rd.reply() == ("+", b"PONG"))
            except (ConnectionError, OSError):
                alive.append(False)
        return alive

    reload(lg, redis_conf(port, srv, "  client_connections: 2\n"))
    wait_for(lambda: "finished draining" in lg.log(), timeout=10, what="old generation gone")
    alive = answering()
    assert alive.count(True) == 2, alive
    assert "client_connections limit 2 reached, closing a handed-over client" in lg.log()
    memcache = redis_conf(port, srv).replace("  redis: true\n", "  protocol: memcache\n")
    reload(lg, memcache)
    wait_for(lambda: lg.log().count("finished draining") == 2, timeout=10,
             what="second old generation gone")
    assert answering() == [False] * 4
    for s in socks:
        s.close()


def test_watch_config_reloads_a_changed_file_once_it_held_still(legate, echo_server):
    """legate.watch_config: a new content is loaded without a signal once it
    has held still for one check (an editor's rename, kubelet's swap of a
    ConfigMap's symlinks); a broken one is logged once and the running
    configuration stays; with the key gone, changes wait for SIGHUP."""
    a, b, c, d = (echo_server(mode="name", name=n) for n in "abcd")
    port = free_port()

    def conf(server, watch=True):
        section = "legate:\n  workers: 2\n" + ("  watch_config: 200ms\n" if watch else "")
        return tcp_pool(f"127.0.0.1:{port}", [f"127.0.0.1:{server.port}:1"],
                        legate_section=section)

    lg = legate(conf(a), wait_addr=("127.0.0.1", port))
    path = lg.conf_path
    changed = "changed, reloading"

    def settle(expect_name, count):
        wait_for(lambda: lg.log().count(changed) == count and
                 name_of(("127.0.0.1", port)) == expect_name, timeout=10,
                 what=f"{expect_name} after {count} reloads")

    assert name_of(("127.0.0.1", port)) == "a"
    # an editor's save: a new file renamed over the old one
    tmp = path.with_name("new.yml")
    tmp.write_text(conf(b))
    os.replace(tmp, path)
    settle("b", 1)
    # a touch is no change
    os.utime(path)
    time.sleep(0.8)
    assert lg.log().count(changed) == 1
    # a broken file: logged once, not at every check, and b keeps serving
    path.write_text(conf(b) + "  bogus_key: 1\n")
    wait_for(lambda: "keeping the running configuration" in lg.log(), timeout=10,
             what="the broken file refused")
    time.sleep(0.8)
    assert lg.log().count("keeping the running configuration") == 1
    assert lg.log().count(changed) == 2
    assert name_of(("127.0.0.1", port)) == "b"
    # kubelet's layout: the file is a link into ..data, swapped by a rename
    for v, server in (("v1", c), ("v2", d)):
        (path.parent / v).mkdir()
        (path.parent / v / "legate.yml").write_text(conf(server))
    os.symlink("v1", path.parent / "..data")
    link = path.with_name("link.tmp")
    os.symlink("..data/legate.yml", link)
    os.replace(link, path)
    settle("c", 3)
    os.symlink("v2", path.parent / "..data_tmp")
    os.replace(path.parent / "..data_tmp", path.parent / "..data")
    settle("d", 4)
    assert "SIGHUP" not in lg.log()
    # the new content turns the watch off: further changes wait for SIGHUP
    (path.parent / "v2" / "legate.yml").write_text(conf(a, watch=False))
    settle("a", 5)
    (path.parent / "v2" / "legate.yml").write_text(conf(b, watch=False))
    time.sleep(1.0)  # five of the old intervals
    assert lg.log().count(changed) == 5 and name_of(("127.0.0.1", port)) == "a"
    lg.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: name_of(("127.0.0.1", port)) == "b", timeout=10, what="SIGHUP's reload")
