"""The stats listener (-s/-a) serves nutcracker's JSON: same structure and
field names as a real nutcracker for the same pool, and counters that
match the traffic sent."""

import json
import socket
import subprocess

import redis

from conftest import (RedisServer, can_connect, free_port, recv_all, stats_json, tcp_pool,
                      wait_for)
from resp import encode, Reader


def pool_yaml(port, shards):
    lines = "".join(f"    - 127.0.0.1:{s.port}:1\n" for s in shards)
    return f"alpha:\n  listen: 127.0.0.1:{port}\n  redis: true\n  servers:\n{lines}"


def test_same_structure_as_nutcracker(legate, tmp_path):
    shards = [RedisServer(tmp_path) for _ in range(2)]
    nc_port, nc_stats, lg_port = free_port(), free_port(), free_port()
    conf = tmp_path / "nc.yml"
    conf.write_text(pool_yaml(nc_port, shards))
    nc = subprocess.Popen(["nutcracker", "-c", str(conf), "-s", str(nc_stats)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: can_connect(("127.0.0.1", nc_stats)), what="nutcracker stats")
        theirs = stats_json(nc_stats)
        lg = legate("legate:\n  workers: 2\n" + pool_yaml(lg_port, shards),
                    wait_addr=("127.0.0.1", lg_port))
        ours = stats_json(lg.stats_port)
    finally:
        nc.terminate()
        nc.wait(10)
        for s in shards:
            s.stop()
    assert set(ours) == set(theirs)
    assert ours["service"] == "legate" and theirs["service"] == "nutcracker"
    assert set(ours["alpha"]) == set(theirs["alpha"])  # pool fields and server names
    extra = {"latency_p50_us", "latency_p90_us", "latency_p99_us"}  # legate's additions
    for name, fields in theirs["alpha"].items():
        if isinstance(fields, dict):
            assert set(ours["alpha"][name]) == set(fields) | extra, name


def test_counters_follow_traffic(legate, tmp_path):
    shards = [RedisServer(tmp_path) for _ in range(2)]
    try:
        port = free_port()
        lg = legate("legate:\n  workers: 2\n" + pool_yaml(port, shards),
                    wait_addr=("127.0.0.1", port))
        n = 500
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"".join(encode("SET", f"st:{i * 7919}", "v") for i in range(n)))
            rd = Reader(s)
            for _ in range(n):
                assert rd.reply() == ("+", b"OK")
            st = stats_json(lg.stats_port)
            pool = st["alpha"]
            servers = [v for v in pool.values() if isinstance(v, dict)]
            assert sum(v["requests"] for v in servers) == n
            assert sum(v["responses"] for v in servers) == n
            assert sum(v["response_bytes"] for v in servers) == 5 * n  # "+OK\r\n"
            assert all(v["in_queue"] == 0 and v["out_queue"] == 0 for v in servers)
            for v in servers:
                assert 0 < v["latency_p50_us"] <= v["latency_p90_us"] <= v["latency_p99_us"]
                assert v["latency_p99_us"] < 10_000_000
            assert pool["client_connections"] == 1
            assert sum(v["server_connections"] for v in servers) >= 2
            assert st["curr_connections"] >= 3
        # the multi-key split counts fragments
        r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
        r.mget([f"st:{i * 7919}" for i in range(50)])
        r.connection_pool.disconnect()  # 4.3: close() only returns it to the pool
        wait_for(lambda: stats_json(lg.stats_port)["alpha"]["client_connections"] == 0,
                 what="clients closed")
        st = stats_json(lg.stats_port)
        assert st["alpha"]["fragments"] == 2
        assert st["alpha"]["client_eof"] == 2
        # a dead shard: errors are counted
        shards[0].stop()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"".join(encode("GET", f"st:{i * 7919}") for i in range(50)))
            rd = Reader(s)
            replies = [rd.reply() for _ in range(50)]
        assert any(isinstance(x, tuple) and x[0] == "-" for x in replies)
        st = stats_json(lg.stats_port)
        assert st["alpha"]["forward_error"] > 0
        first = st["alpha"][f"127.0.0.1:{shards[0].port}"]
        assert first["server_eof"] + first["server_err"] >= 1
    finally:
        for s in shards[1:]:
            s.stop()


def test_tcp_pool_counts_connections(legate, echo_server):
    echo = echo_server()
    port = free_port()
    lg = legate(tcp_pool(f"127.0.0.1:{port}", [f"127.0.0.1:{echo.port}:1"]),
                wait_addr=("127.0.0.1", port))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"x")
        assert s.recv(1) == b"x"
        st = stats_json(lg.stats_port)
        assert st["pool"]["client_connections"] == 1
        assert st["pool"][f"127.0.0.1:{echo.port}"]["server_connections"] == 1
    wait_for(lambda: stats_json(lg.stats_port)["pool"]["client_connections"] == 0, what="close")
    st = stats_json(lg.stats_port)
    assert st["pool"][f"127.0.0.1:{echo.port}"]["server_connections"] == 0
    assert st["total_connections"] >= 2


def test_stats_address_flag_picks_the_interface(legate, echo_server):
    """-a binds the stats listener to that address alone (nutcracker's
    flag; legate's default is 127.0.0.1)."""
    echo = echo_server()
    port, sport = free_port(), free_port()
    legate(tcp_pool(f"127.0.0.1:{port}", [f"127.0.0.1:{echo.port}:1"]),
           wait_addr=("127.0.0.1", port), args=("-s", str(sport), "-a", "127.0.0.2"))
    with socket.create_connection(("127.0.0.2", sport), timeout=10) as s:
        assert json.loads(recv_all(s))["service"] == "legate"
    assert not can_connect(("127.0.0.1", sport))


def test_stats_port_in_use_refuses_to_start(tmp_path, echo_server):
    from conftest import Legate
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = free_port()
    lg = Legate(tmp_path, tcp_pool(f"127.0.0.1:{port}", ["127.0.0.1:1:1"]),
                args=["-s", str(busy.getsockname()[1])])
    lg.start()
    assert lg.proc.wait(10) == 1
    assert "cannot listen for stats" in lg.log()
    busy.close()


def _cpu_ticks(pid, tid):
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_stats_listener_out_of_descriptors_pauses_and_answers_later(legate, echo_server):
    """With no descriptor to spare, the stats client waits instead of the
    main loop spinning on a listener it cannot accept from; it is answered
    once descriptors are back."""
    import os
    import resource
    import time
    echo = echo_server()
    port = free_port()
    lg = legate(tcp_pool(f"127.0.0.1:{port}", [f"127.0.0.1:{echo.port}:1"]),
                wait_addr=("127.0.0.1", port))
    pid = lg.proc.pid
    wait_for(lambda: "stats on" in lg.log(), what="the stats listener")
    in_use = len(os.listdir(f"/proc/{pid}/fd"))
    hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)[1]
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use, hard))  # soft: raised again below
    with socket.create_connection(("127.0.0.1", lg.stats_port), timeout=10) as s:
        wait_for(lambda: "stats: accept failed" in lg.log(), what="the failed stats accept")
        before = _cpu_ticks(pid, pid)
        time.sleep(1.0)
        spent = _cpu_ticks(pid, pid) - before
        assert spent < os.sysconf("SC_CLK_TCK") * 0.3, f"main thread spun: {spent} ticks in 1 s"
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 16, hard))
        assert json.loads(recv_all(s))["service"] == "legate"
    assert "stats: accepting again" in lg.log()
