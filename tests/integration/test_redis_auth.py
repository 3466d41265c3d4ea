"""AUTH toward clients and servers, redis_db, HELLO."""

import pytest
import redis

from conftest import RedisServer, free_port
from resp import command


@pytest.fixture
def locked_shards(tmp_path):
    servers = [RedisServer(tmp_path, args=("--requirepass", "s3cret")) for _ in range(2)]
    yield servers
    for s in servers:
        s.stop()


def pool(port, shards, extra):
    lines = "".join(f"    - 127.0.0.1:{s.port}:1\n" for s in shards)
    return (f"legate:\n  workers: 1\ncache:\n  listen: 127.0.0.1:{port}\n  redis: true\n"
            f"  timeout: 2000\n{extra}  servers:\n{lines}")


def test_clients_must_auth_and_legate_auths_to_servers(legate, locked_shards):
    port = free_port()
    legate(pool(port, locked_shards, "  redis_auth: s3cret\n"), wait_addr=("127.0.0.1", port))
    anon = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    with pytest.raises(redis.AuthenticationError):
        anon.get("k")
    assert command(port, "GET", "k") == ("-", b"NOAUTH Authentication required.")
    with pytest.raises(redis.ResponseError, match="WRONGPASS"):
        redis.Redis(host="127.0.0.1", port=port, password="wrong", socket_timeout=10).ping()
    one = redis.Redis(host="127.0.0.1", port=port, password="s3cret", socket_timeout=10)
    assert one.set("k", "v") and one.get("k") == b"v"  # legate AUTHed to the shard
    two = redis.Redis(host="127.0.0.1", port=port, username="default", password="s3cret",
                      socket_timeout=10)
    assert two.get("k") == b"v"
    with pytest.raises(redis.ResponseError, match="WRONGPASS"):
        redis.Redis(host="127.0.0.1", port=port, username="other", password="s3cret",
                    socket_timeout=10).ping()


def test_wrong_server_password_fails_fast(legate, locked_shards):
    port = free_port()
    legate(pool(port, locked_shards, "  redis_auth: s3cret\n  redis_user: default\n"),
           wait_addr=("127.0.0.1", port))
    ok = redis.Redis(host="127.0.0.1", port=port, password="s3cret", socket_timeout=10)
    assert ok.set("a", "1")  # two-argument AUTH toward the servers works

    port2 = free_port()
    legate(pool(port2, locked_shards, "  redis_auth: not-the-servers\n"),
           wait_addr=("127.0.0.1", port2), name="bad")
    r = redis.Redis(host="127.0.0.1", port=port2, password="not-the-servers", socket_timeout=10)
    with pytest.raises(redis.ResponseError, match="refused legate's AUTH"):
        r.get("a")


def test_redis_db_is_selected_on_servers(legate, tmp_path):
    shards = [RedisServer(tmp_path) for _ in range(2)]
    try:
        port = free_port()
        legate(pool(port, shards, "  redis_db: 3\n"), wait_addr=("127.0.0.1", port))
        r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
        for i in range(20):
            r.set(f"db:{i * 7919}", i)
        in3 = sum(int(command(s.port, "SELECT", "3") == ("+", b"OK")) for s in shards)
        assert in3 == 2
        total3 = 0
        for s in shards:
            import socket as so
            from resp import Reader, encode
            with so.create_connection(("127.0.0.1", s.port), timeout=10) as c:
                c.sendall(encode("SELECT", "3") + encode("DBSIZE") + encode("SELECT", "0") +
                          encode("DBSIZE"))
                rd = Reader(c)
                rd.reply()
                total3 += int(rd.reply()[1])
                rd.reply()
                assert rd.reply() == (":", b"0")  # nothing in db 0
        assert total3 == 20
    finally:
        for s in shards:
            s.stop()


def test_hello(legate, tmp_path):
    shards = [RedisServer(tmp_path)]
    try:
        port = free_port()
        legate(pool(port, shards, ""), wait_addr=("127.0.0.1", port))
        reply = command(port, "HELLO", "2")
        assert isinstance(reply, list) and reply[0] == b"server" and reply[1] == b"legate"
        assert reply[5] == (":", b"2")
        err = command(port, "HELLO", "3")
        assert err[0] == "-" and err[1].startswith(b"NOPROTO")
        assert command(port, "HELLO")[1] == b"legate"
    finally:
        for s in shards:
            s.stop()


def test_hello_with_auth(legate, locked_shards):
    port = free_port()
    legate(pool(port, locked_shards, "  redis_auth: s3cret\n"), wait_addr=("127.0.0.1", port))
    assert command(port, "HELLO", "2")[1].startswith(b"NOAUTH")
    reply = command(port, "HELLO", "2", "AUTH", "default", "s3cret")
    assert isinstance(reply, list) and reply[1] == b"legate"
