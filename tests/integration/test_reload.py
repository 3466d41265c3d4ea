"""Hot reload (SIGHUP): a new configuration takes new clients while the old
one drains — no client refused, established sessions finish, a bad file or
a listener that cannot open keeps the running configuration."""

import os
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
