"""Memcache pools: real memcached shards behind legate, real clients
(pymemcache, raw sockets). Key placement is compared with a nutcracker
started on the same servers; multi-key gets are split and merged in key
order; noreply, unknown commands, malformed input, limits and a server
dying mid-pipeline."""

import signal
import shutil
import socket
import subprocess
import time

import pytest
from pymemcache.client.base import Client

from conftest import (free_port, wait_for, can_connect, recv_all, recv_exactly, stats_json,
                      vanish_churn)


class Memcached:
    def __init__(self, args=()):
        assert shutil.which("memcached"), "memcached missing: run scripts/bootstrap"
        self.port = free_port()
        self.proc = subprocess.Popen(["memcached", "-u", "root", "-l", "127.0.0.1",
                                      "-p", str(self.port), "-U", "0", "-I", "2m", *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: can_connect(("127.0.0.1", self.port)), what="memcached")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def stat(self, name):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"stats\r\n")
            data = b""
            while not data.endswith(b"END\r\n"):
                data += s.recv(65536)
        for line in data.decode().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == name:
                return int(parts[2])
        raise AssertionError(f"no stat {name}")

    def has(self, key):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"get " + key + b"\r\n")
            data = b""
            while not data.endswith(b"END\r\n"):
                data += s.recv(65536)
        return data.startswith(b"VALUE ")


@pytest.fixture
def shards():
    made = []

    def make(n=3, args=()):
        for _ in range(n):
            made.append(Memcached(args))
        return made[-n:]

    yield make
    for m in made:
        m.stop()


def pool_conf(port, servers, extra="", legate=True, hash_name="md5"):
    """md5 by default: it spreads any keys; fnv1a_64 (twemproxy's default)
    can put hundreds of similar short keys on one server, as nutcracker does."""
    head = "legate:\n  workers: 2\n  shutdown_grace: 2s\n" if legate else ""
    lines = "".join(f"    - 127.0.0.1:{m.port}:1\n" for m in servers)
    return (f"{head}cache:\n  listen: 127.0.0.1:{port}\n  hash: {hash_name}\n"
            f"  distribution: ketama\n  timeout: 2000\n{extra}  servers:\n{lines}")


def start(legate, servers, extra=""):
    port = free_port()
    legate(pool_conf(port, servers, extra), wait_addr=("127.0.0.1", port))
    return port


def exchange(port, payload, until, timeout=10):
    """Send payload on a new connection; read until `until` ends the data."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        data = b""
        while not data.endswith(until):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        return data


def test_commands_through_pymemcache(legate, shards):
    servers = shards(3)
    port = start(legate, servers)
    c = Client(("127.0.0.1", port), timeout=5, connect_timeout=5)
    keys = [f"user:{i}".encode() for i in range(300)]
    for k in keys:
        c.set(k, b"v-" + k, noreply=False)
    assert all(m.stat("curr_items") > 0 for m in servers)  # spread over the shards
    got = c.get_many(keys)
    assert got == {k: b"v-" + k for k in keys}
    assert c.get(b"missing") is None
    c.set(b"quiet", b"1")  # pymemcache sends noreply by default
    assert c.get(b"quiet") == b"1"
    assert c.add(b"user:1", b"x", noreply=False) is False
    assert c.add(b"fresh", b"x", noreply=False) is True
    assert c.replace(b"nokey", b"x", noreply=False) is False
    assert c.append(b"fresh", b"yz", noreply=False) is True
    assert c.prepend(b"fresh", b"w", noreply=False) is True
    assert c.get(b"fresh") == b"wxyz"
    c.set(b"n", b"10", noreply=False)
    assert c.incr(b"n", 5) == 15
    assert c.decr(b"n", 3) == 12
    assert c.incr(b"nothing", 1) is None
    value, cas = c.gets(b"n")
    assert value == b"12"
    assert c.cas(b"n", b"20", cas, noreply=False) is True
    assert c.cas(b"n", b"30", cas, noreply=False) is False
    assert c.touch(b"n", 100, noreply=False) is True
    assert c.delete(b"n", noreply=False) is True
    assert c.delete(b"n", noreply=False) is False
    # a server's own version, as through nutcracker
    direct = Client(("127.0.0.1", servers[0].port), timeout=5, connect_timeout=5)
    assert c.version() == direct.version() and c.version()[:1].isdigit()
    direct.close()
    c.close()


@pytest.mark.parametrize("survivor", [0, 1, 2])
def test_version_comes_from_a_live_server(legate, shards, survivor):
    """With all shards but one dead, version is still answered, by the
    live one: whichever shard the ring would pick for an empty key, in two
    of these three cases it is dead."""
    servers = shards(3)
    port, sport = free_port(), free_port()
    legate(pool_conf(port, servers), wait_addr=("127.0.0.1", port), args=("-s", str(sport)))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        keys = [f"v{i}".encode() for i in range(300)]
        s.sendall(b"".join(b"set %s 0 0 1\r\nx\r\n" % k for k in keys))
        data = b""
        while data.count(b"STORED") < 300:
            data += s.recv(65536)
        assert all(m.stat("curr_items") > 0 for m in servers)  # connected to each
        want = Client(("127.0.0.1", servers[survivor].port), timeout=5).version()
        for i, m in enumerate(servers):
            if i != survivor:
                m.stop()
        # A server stopped a moment ago may still look connected to the
        # worker that has yet to read its close; one sent there is
        # answered with an error, rightly. The premise here is servers
        # known dead, so wait until every worker has seen them go.
        dead = [f"127.0.0.1:{m.port}" for i, m in enumerate(servers) if i != survivor]
        wait_for(lambda: all(stats_json(sport)["cache"][name]["server_connections"] == 0
                             for name in dead), what="the stopped servers' connections closed")
        for _ in range(5):
            s.sendall(b"version\r\n")
            assert s.recv(100) == b"VERSION " + want + b"\r\n"


def test_libmemcached_tools_through_legate(legate, shards, tmp_path):
    """libmemcached's own tools: memcping asks every server for its version
    (it refuses a major version 0), memccp/memccat/memcrm store, read and
    delete a file's contents."""
    for tool in ("memcping", "memccp", "memccat", "memcrm"):
        assert shutil.which(tool), f"{tool} missing: run scripts/bootstrap"
    servers = shards(3)
    port = start(legate, servers)
    opt = f"--servers=127.0.0.1:{port}"
    subprocess.run(["memcping", opt], check=True, timeout=30)
    f = tmp_path / "blob.txt"
    f.write_bytes(b"legate carries this\n")
    subprocess.run(["memccp", opt, str(f)], check=True, cwd=tmp_path, timeout=30)
    out = subprocess.run(["memccat", opt, "blob.txt"], check=True, capture_output=True,
                         timeout=30).stdout
    assert out.startswith(b"legate carries this\n")
    subprocess.run(["memcrm", opt, "blob.txt"], check=True, timeout=30)
    assert subprocess.run(["memccat", opt, "blob.txt"], capture_output=True,
                          timeout=30).returncode != 0


def test_split_get_keeps_key_order_with_misses_and_duplicates(legate, shards):
    servers = shards(3)
    port = start(legate, servers)
    keys = [f"user:{i}".encode() for i in range(1000)]
    payload = b"".join(b"set %s 7 0 %d\r\n%s\r\n" % (k, len(k) + 1, k + b"!")
                       for k in keys[::2])
    assert exchange(port, payload, b"STORED\r\n" * 500).count(b"STORED") == 500
    assert sum(m.stat("curr_items") > 0 for m in servers) >= 2  # the get is split
    asked = keys + [keys[0], keys[1]]  # a hit and a miss asked twice
    reply = exchange(port, b"gets " + b" ".join(asked) + b"\r\n", b"END\r\n")
    want_keys = [k for k in asked if int(k[5:]) % 2 == 0]
    lines = reply.split(b"\r\n")
    values = [ln.split()[1] for ln in lines if ln.startswith(b"VALUE ")]
    assert values == want_keys
    assert reply.endswith(b"END\r\n") and reply.count(b"END\r\n") == 1
    for ln, data in zip(lines[::2], lines[1::2]):
        if ln.startswith(b"VALUE "):
            parts = ln.split()
            assert parts[2] == b"7" and len(parts) == 5  # flags and the cas of gets
            assert data == parts[1] + b"!"
    # gat with its exptime reaches every shard the same way
    reply = exchange(port, b"gat 100 user:0 user:1 user:2 user:998\r\n", b"END\r\n")
    assert [ln.split()[1] for ln in reply.split(b"\r\n") if ln.startswith(b"VALUE")] == \
        [b"user:0", b"user:2", b"user:998"]


def test_keys_with_control_bytes_as_memaslap_sends_them(legate, shards):
    """memcached splits tokens at spaces only, so a tab or a 0x10 byte is
    part of a key (libmemcached's memaslap starts every key with eight
    0x10 bytes): stored, fetched and split like any other key."""
    servers = shards(3)
    port = start(legate, servers)
    keys = [b"\x10" * 8 + b"k\t%d\x7f" % i for i in range(60)]
    payload = b"".join(b"set %s 3 0 2\r\nv%d\r\n" % (k, i % 10) for i, k in enumerate(keys))
    assert exchange(port, payload, b"STORED\r\n" * 60).count(b"STORED") == 60
    assert all(m.stat("curr_items") > 0 for m in servers)  # the get below is split
    reply = exchange(port, b"get " + b" ".join(keys) + b"\r\n", b"END\r\n")
    want = b"".join(b"VALUE %s 3 2\r\nv%d\r\n" % (k, i % 10) for i, k in enumerate(keys))
    assert reply == want + b"END\r\n"


def test_split_get_with_a_dead_shard_is_one_error(legate, shards):
    servers = shards(3)
    port = start(legate, servers)
    keys = [f"d{i}".encode() for i in range(200)]
    payload = b"".join(b"set %s 0 0 1\r\nx\r\n" % k for k in keys)
    assert exchange(port, payload, b"STORED\r\n" * 200).count(b"STORED") == 200
    assert sum(m.stat("curr_items") > 0 for m in servers) >= 2  # the get is split
    dead = next(m for m in servers if m.stat("curr_items") > 0)
    dead.stop()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"get " + b" ".join(keys) + b"\r\n")
        data = b""
        while not data.endswith(b"\r\n"):
            data += s.recv(65536)
        # the whole get fails as one: no partial values, no END
        assert data.startswith(b"SERVER_ERROR legate: ") and data.count(b"\r\n") == 1
        s.sendall(b"version\r\n")  # the connection stays usable
        assert s.recv(100).startswith(b"VERSION ")


def test_placement_matches_nutcracker(legate, shards, tmp_path):
    assert shutil.which("nutcracker"), "nutcracker missing: run scripts/bootstrap"
    servers = shards(3)
    # with control bytes in keys, as memaslap sends them (0x10 prefix, tabs)
    keys = [f"user:{i}".encode() for i in range(2000)] + \
        [f"{{tag{i % 7}}}:x:{i}".encode() for i in range(200)] + \
        [b"\x10" * 8 + f"ctl\t{i}\x7f".encode() for i in range(200)]
    placements = []
    for proxy in ("nutcracker", "legate"):
        port = free_port()
        conf = pool_conf(port, servers, extra='  hash_tag: "{}"\n', legate=proxy == "legate",
                         hash_name="fnv1a_64")
        if proxy == "legate":
            legate(conf, wait_addr=("127.0.0.1", port))
        else:
            path = tmp_path / "nc.yml"
            path.write_text(conf)
            nc = subprocess.Popen(["nutcracker", "-c", str(path), "-s", str(free_port())],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for(lambda: can_connect(("127.0.0.1", port)), what="nutcracker")
        payload = b"".join(b"set %s 0 0 1\r\nx\r\n" % k for k in keys)
        assert exchange(port, payload, b"STORED\r\n" * len(keys)).count(b"STORED") == len(keys)
        placements.append([next(i for i, m in enumerate(servers) if m.has(k)) for k in keys])
        if proxy == "nutcracker":
            nc.terminate()
            nc.wait(10)
        for m in servers:
            exchange(m.port, b"flush_all\r\n", b"OK\r\n")
    assert placements[0] == placements[1]
    assert len(set(placements[0])) == 3


def test_noreply_unknown_commands_and_byte_at_a_time(legate, shards):
    servers = shards(2)
    port = start(legate, servers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        req = (b"set a 0 0 1 noreply\r\nA\r\nstats\r\ndelete nokey noreply\r\n"
               b"incr a 1 noreply\r\nflush_all\r\nget a\r\n")
        for b in req:
            s.sendall(bytes([b]))
        data = b""
        while not data.endswith(b"END\r\n"):
            data += s.recv(65536)
        # one ERROR per command legate does not forward, nothing for noreply
        assert data == b"ERROR\r\nERROR\r\nVALUE a 0 1\r\nA\r\nEND\r\n"
        s.sendall(b"version\r\n")  # the connection stays open
        assert s.recv(100).startswith(b"VERSION ")
    assert sum(m.stat("cmd_flush") for m in servers) == 0


@pytest.mark.parametrize("bad,why", [
    (b"set k 0 0 abc\r\nxyz\r\n", b"bad data chunk"),
    (b"set k 0 0 3\r\nabcd\r\n", b"bad data chunk"),
    (b"set k 0 0\r\n", b"bad command line format"),
    (b"get " + b"k" * 251 + b"\r\n", b"key longer than 250 bytes"),
    (b"get a\rb\r\n", b"CR without LF"),
    (b"get a\x00b\r\n", b"NUL byte"),
])
def test_malformed_requests_get_client_error_and_reach_no_server(legate, shards, bad, why):
    servers = shards(2)
    port = start(legate, servers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"get ok\r\n" + bad + b"get after\r\n")
        data = recv_all(s)
    assert data.startswith(b"END\r\nCLIENT_ERROR legate: " + why)
    assert data.count(b"\r\n") == 2  # nothing after the error: closed
    assert sum(m.stat("cmd_set") for m in servers) == 0
    assert sum(m.stat("cmd_get") for m in servers) == 1


def test_limits_from_the_config(legate, shards):
    servers = shards(1)
    port = start(legate, servers, extra="  limits: { inline: 64, bulk: 1kb, args: 5 }\n")
    cases = [
        (b"get " + b"a" * 60 + b"\r\n", b"command line too long"),
        (b"set k 0 0 1025\r\n", b"data block too large"),
        (b"get a b c d e\r\n", b"too many keys"),
    ]
    for bad, why in cases:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(bad)
            assert recv_all(s).startswith(b"CLIENT_ERROR legate: " + why)
    ok = exchange(port, b"set k 0 0 1024\r\n" + b"v" * 1024 + b"\r\nget a b c\r\n", b"END\r\n")
    assert ok == b"STORED\r\nEND\r\n"


def test_max_pending_answers_excess_with_server_error(legate, shards):
    """max_pending holds for memcache pools as for redis: past it a request
    is answered at once in memcached's own error form, and the ones in
    flight are still answered."""
    servers = shards(1)
    port = start(legate, servers, extra="  max_pending: 3\n")
    servers[0].proc.send_signal(19)  # SIGSTOP: requests hang in flight
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        c.sendall(b"".join(b"set k%d 0 0 1\r\nv\r\n" % i for i in range(3)))
        time.sleep(0.3)
        t = time.monotonic()
        reply = exchange(port, b"get x\r\n", b"\r\n")
        assert reply == b"SERVER_ERROR legate: pool busy: 3 requests in flight (max_pending)\r\n"
        assert time.monotonic() - t < 2
    finally:
        servers[0].proc.send_signal(18)
    data = b""
    while data.count(b"STORED\r\n") < 3:
        data += c.recv(100)
    assert data == b"STORED\r\n" * 3
    c.close()
    assert exchange(port, b"get k1\r\n", b"END\r\n") == b"VALUE k1 0 1\r\nv\r\nEND\r\n"


def test_several_server_connections_keep_each_clients_order(legate, shards):
    """server_connections above 1: one client's requests to a server go
    over one connection, so a pipelined incr run counts 1..n and a get
    sees the set before it; clients take the connections in turn."""
    servers = shards(1)
    port = free_port()
    legate(pool_conf(port, servers, "  server_connections: 4\n").replace("workers: 2", "workers: 1"),
           wait_addr=("127.0.0.1", port))
    # memcached counts the stats connection asking; the probe that saw it
    # listening may still count for a moment (its close not yet processed)
    wait_for(lambda: servers[0].stat("curr_connections") == 1, what="memcached's probe gone")
    n = 2000
    payload = (b"set counter 0 0 1\r\n0\r\n" + b"incr counter 1\r\n" * n +
               b"".join(b"set rw%d 0 0 %d\r\nv%d\r\nget rw%d\r\n" % (i % 7, len(b"v%d" % i), i, i % 7)
                        for i in range(n)))
    want = (b"STORED\r\n" + b"".join(b"%d\r\n" % i for i in range(1, n + 1)) +
            b"".join(b"STORED\r\nVALUE rw%d 0 %d\r\nv%d\r\nEND\r\n" % (i % 7, len(b"v%d" % i), i)
                     for i in range(n)))
    assert exchange(port, payload, b"v%d\r\nEND\r\n" % (n - 1), timeout=30) == want
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(8)]
    for c in socks:
        c.sendall(b"incr counter 1\r\n")
    for c in socks:
        assert int(c.recv(100)) > n
        c.close()
    wait_for(lambda: servers[0].stat("curr_connections") == 1 + 4,
             what="legate's four connections, no more")


def test_large_values_pass_through(legate, shards):
    servers = shards(3)
    port = start(legate, servers)
    c = Client(("127.0.0.1", port), timeout=10, connect_timeout=5)
    big = bytes(range(256)) * 4096  # 1 MiB with every byte value, CR and LF included
    for i in range(5):
        c.set(f"big{i}".encode(), big, noreply=False)
    got = c.get_many([f"big{i}".encode() for i in range(5)])
    assert len(got) == 5 and all(v == big for v in got.values())
    c.close()


def count_replies(data):
    """Replies in a memcached reply stream: one per STORED, NOT_FOUND, error
    line or END (a get's VALUE blocks belong to its END)."""
    n, lines, i = 0, data.split(b"\r\n"), 0
    while i < len(lines):
        if lines[i].startswith(b"VALUE "):
            i += 2
            continue
        n += lines[i] != b""
        i += 1
    return n


def test_server_killed_mid_pipeline_answers_every_request(legate, shards):
    servers = shards(3)
    port = start(legate, servers)
    keys = [f"p{i}".encode() for i in range(3000)]
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"".join(b"set %s 0 0 2\r\nok\r\n" % k for k in keys))
        servers[1].stop()
        s.sendall(b"".join(b"get %s\r\n" % k for k in keys))
        data = b""
        deadline = time.monotonic() + 15
        while count_replies(data) < 6000 and time.monotonic() < deadline:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    assert count_replies(data) == 6000
    lines = data.split(b"\r\n")
    errors = [r for r in lines if r.startswith(b"SERVER_ERROR")]
    assert errors and all(r.startswith(b"SERVER_ERROR legate: ") for r in errors)
    # legate is alive and the live shards still answer
    c = Client(("127.0.0.1", port), timeout=5)
    live = [k for k in keys if servers[0].has(k) or servers[2].has(k)]
    assert live and c.get(live[0]) == b"ok"
    c.close()


def test_a_server_closing_idle_connections_is_not_a_failure(legate, shards):
    """memcached's idle_timeout closes legate's idle connections: no
    failure, no ejection, and the next request connects again."""
    servers = shards(1, args=("-o", "idle_timeout=1"))
    port, sport = free_port(), free_port()
    lg = legate(pool_conf(port, servers, "  auto_eject_hosts: true\n  server_failure_limit: 1\n"
                                         "  server_retry_timeout: 30000\n"),
                wait_addr=("127.0.0.1", port), args=("-s", str(sport)))
    c = Client(("127.0.0.1", port), timeout=5)
    assert c.set("idle", b"kept")
    for round_ in (1, 2):
        wait_for(lambda: servers[0].stat("idle_kicks") >= round_, timeout=10,
                 what="memcached closing the idle connection")
        assert c.get("idle") == b"kept"
    assert stats_json(sport)["cache"]["server_ejects"] == 0
    assert "ejected" not in lg.log()


def test_reload_hands_clients_over_without_closing_them(legate, shards):
    """A pymemcache client and a raw socket with half a request in it stay
    connected across a reload that moves the pool to another memcached: the
    old generation hands them over and the new one's server answers."""
    a, b = shards(2)
    Client(("127.0.0.1", a.port)).set("k", "old", noreply=False)  # stored before legate asks
    Client(("127.0.0.1", b.port)).set("k", "new", noreply=False)
    port = free_port()
    lg = legate(pool_conf(port, [a]), wait_addr=("127.0.0.1", port))
    client = Client(("127.0.0.1", port), timeout=10)
    assert client.get("k") == b"old"
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.sendall(b"get")
    time.sleep(0.2)
    lg.conf_path.write_text(pool_conf(port, [b]))
    lg.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "finished draining" in lg.log(), timeout=10, what="old generation gone")
    raw.sendall(b" k\r\n")
    data = b""
    while not data.endswith(b"END\r\n"):
        chunk = raw.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    assert data == b"VALUE k 0 3\r\nnew\r\nEND\r\n"
    assert client.get("k") == b"new"  # the same connection: pymemcache did not reconnect
    assert "took over" in lg.log()
    raw.close()


def test_clients_vanishing_mid_pipeline_leave_legate_whole(legate, shards):
    """The redis test of this name in memcache's protocol: 600 clients reset
    or close with pipelines (multi-key gets split over three memcached
    among them) in flight, some half-close and get every reply, while a
    busy client goes on; then no reply went astray, the gauge is back to
    zero, and (in the ASan build) legate exits clean."""
    servers = shards(3)
    port, sport = free_port(), free_port()
    legate(pool_conf(port, servers), wait_addr=("127.0.0.1", port), args=("-s", str(sport)))
    keys = [b"v%d" % i for i in range(60)]
    c = Client(("127.0.0.1", port), timeout=10)
    for k in keys:
        c.set(k, k, noreply=False)
    c.close()

    def values(ks):
        return b"".join(b"VALUE %s 0 %d\r\n%s\r\n" % (k, len(k), k) for k in ks)
    batch = b"".join(b"get %s\r\n" % k for k in keys[:16])
    batch_replies = b"".join(values([k]) + b"END\r\n" for k in keys[:16])
    pipeline = b"".join(b"get %s\r\n" % k for k in keys[16:48]) + \
        b"get " + b" ".join(keys[:30]) + b"\r\nset x 0 0 1\r\nx\r\n"
    replies = b"".join(values([k]) + b"END\r\n" for k in keys[16:48]) + \
        values(keys[:30]) + b"END\r\nSTORED\r\n"

    def answered(s):
        assert recv_exactly(s, len(replies)) == replies

    deep = b"".join(b"get %s\r\n" % k for k in keys) * 40  # 2,400 requests
    ways = [(pipeline, "reset"), (deep, "read-reset"), (pipeline, "half-close"),
            (deep, "read-reset"), (pipeline, "close"), (deep, "read-reset")]
    assert vanish_churn(port, 600, ways,
                        lambda s: s.sendall(batch) or
                        recv_exactly(s, len(batch_replies)) == batch_replies,
                        answered) == []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(pipeline)
        answered(s)
    wait_for(lambda: stats_json(sport)["cache"]["client_connections"] == 0,
             what="every vanished client forgotten")


# ------------------------------------------------------------ meta commands

def converse(port, steps, timeout=10):
    """Send each step on one connection and collect what comes back before
    the step's marker (every step here ends in a reply that is never hidden:
    an `mn`'s MN, or a plain reply line)."""
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        for payload, until in steps:
            s.sendall(payload)
            data = b""
            while not data.endswith(until):
                chunk = s.recv(65536)
                assert chunk, (payload, data)
                data += chunk
            out.append(data)
    return out


META_STEPS = [
    (b"mg miss v q\r\nmn\r\n", b"MN\r\n"),
    (b"ms k1 2 T0 F5 q\r\nhi\r\nmn\r\n", b"MN\r\n"),
    (b"mg k1 v f q\r\nmn\r\n", b"MN\r\n"),
    (b"mg k1 q\r\nmn\r\n", b"MN\r\n"),
    (b"md nokey q\r\nmn\r\n", b"MN\r\n"),
    (b"ms k2 1 q\r\n5\r\nma k2 q\r\nma k2 D10 v\r\nmn\r\n", b"MN\r\n"),
    (b"ma nokey q\r\nma k2 v q\r\nmn\r\n", b"MN\r\n"),
    (b"ms k3 1 MA q\r\nx\r\nmn\r\n", b"MN\r\n"),          # append to nothing: NS shows
    (b"mg k2 k O123 v\r\nmg k9 k O7 v q\r\nmg k1 k O8 s v q\r\nmn\r\n", b"MN\r\n"),
    (b"md k1 q\r\nmg k1 v\r\n", b"EN\r\n"),
    (b"mn with words\r\nget k2 k3\r\n", b"END\r\n"),
    (b"me nokey\r\n", b"EN\r\n"),
    (b"ms a2V5 3 b\r\nabc\r\nmg key v\r\nmg a2V5 b k v\r\nmn\r\n", b"MN\r\n"),
    (b"ms big 70000 q\r\n" + b"v" * 70000 + b"\r\nmg big v q\r\nmn\r\n", b"MN\r\n"),
]


def test_meta_commands_answer_as_memcached_itself_does(legate, shards):
    """The same conversation with a memcached directly and through legate
    (one server): byte for byte the same replies, quiet mode included (the
    server's own rules decide what `q` hides; legate adds an mn behind a
    quiet request and drops its MN)."""
    direct, behind = shards(2)
    port = start(legate, [behind])
    want = converse(direct.port, META_STEPS)
    got = converse(port, META_STEPS)
    for (payload, _), w, g in zip(META_STEPS, want, got):
        assert g == w, (payload[:60], w[:200], g[:200])
    assert b"VA 70000" in want[-1] and b"NS\r\n" in want[7]  # the cases did show


def test_meta_commands_across_shards(legate, shards):
    """Quiet gets over three shards come back in request order with the
    misses hidden; a base64 key is placed where the same key sent plain
    goes; an mn is answered after everything before it."""
    import base64
    servers = shards(3)
    port = start(legate, servers)
    keys = [f"key{i}".encode() for i in range(60)]
    sets = b"".join(b"ms " + base64.b64encode(k) + b" 2 b q\r\n" + k[-2:] + b"\r\n"
                    for k in keys[:40])
    assert converse(port, [(sets + b"mn\r\n", b"MN\r\n")]) == [b"MN\r\n"]
    assert sum(m.stat("curr_items") for m in servers) == 40
    assert min(m.stat("curr_items") for m in servers) > 0  # spread over the shards
    gets = b"".join(b"mg %s O%d v q\r\n" % (k, i) for i, k in enumerate(keys)) + b"mn\r\n"
    data = converse(port, [(gets, b"MN\r\n")])[0]
    want = b"".join(b"VA 2 O%d\r\n%s\r\n" % (i, k[-2:]) for i, k in enumerate(keys[:40]))
    assert data == want + b"MN\r\n"
    # each key lives on the shard its plain name hashes to
    for k in keys[:40]:
        assert sum(m.has(k) for m in servers) == 1


def test_meta_malformed_and_bad_base64(legate, shards):
    servers = shards(2)
    port = start(legate, servers)
    # a key that is not base64: an error reply, and the connection stays
    assert converse(port, [(b"mg not*b64 b v\r\nmn\r\n", b"MN\r\n")]) == \
        [b"CLIENT_ERROR legate: key is not base64\r\nMN\r\n"]
    for bad, why in ((b"ms k abc\r\nxyz\r\n", b"bad data chunk"),
                     (b"ms k 2\r\nxyz\r\n", b"bad data chunk"),
                     (b"mg\r\n", b"bad command line format"),
                     (b"mg " + b"k" * 251 + b" v\r\n", b"key longer than 250 bytes")):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"mn\r\n" + bad + b"mn\r\n")
            data = recv_all(s)
        assert data.startswith(b"MN\r\nCLIENT_ERROR legate: " + why), (bad, data)
        assert data.count(b"\r\n") == 2  # closed after the error
    assert sum(m.stat("cmd_set") for m in servers) == 0


def test_quiet_meta_requests_on_a_server_killed_mid_pipeline_are_answered(legate, shards):
    servers = shards(1)
    port = start(legate, servers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"ms a 1 q\r\nA\r\nmn\r\n")
        assert s.recv(100) == b"MN\r\n"
        servers[0].stop()
        s.sendall(b"".join(b"mg a v q\r\nms b 1 q\r\nB\r\n" for _ in range(50)) + b"mn\r\n")
        data = b""
        while not data.endswith(b"MN\r\n"):
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
    # every request answered, each with an error (a quiet one shows errors)
    assert data.count(b"SERVER_ERROR") == 100 and data.endswith(b"\r\nMN\r\n"), data[:300]
