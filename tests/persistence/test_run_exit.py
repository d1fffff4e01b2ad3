"""`cartwheel run` as a process: a failed start or a failed final snapshot is said, with its exit status."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgpack

from tests.engine.conftest import cart_event
from tests.persistence.conftest import RedisServer, free_port

EXE = str(Path(sys.executable).parent / "cartwheel")


def _config(tmp_path: Path, port: int, store: str) -> Path:
    cfg = tmp_path / "cartwheel.toml"
    cfg.write_text(f'[engine]\ningest_tcp = "127.0.0.1:{port}"\ningest_unix = ""\n'
                   f'admin_unix = "{tmp_path / "admin.sock"}"\nstore = "{store}"\nclock = "manual"\n'
                   'snapshot_interval = "1h"\nsync_timeout = "1s"\n\n[stores.shop1]\nname = "Acme"\n')
    return cfg


def test_an_ingest_address_in_use_is_a_clear_error_and_leaves_no_socket(tmp_path: Path) -> None:
    with socket.socket() as hold:
        hold.bind(("127.0.0.1", 0))
        hold.listen()
        cfg = _config(tmp_path, hold.getsockname()[1], f"file:{tmp_path / 'state'}")
        done = subprocess.run([EXE, "run", "--config", str(cfg)], cwd=tmp_path, capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr[-500:]
    assert "cartwheel: cannot start:" in done.stderr and "address already in use" in done.stderr.lower()
    assert not (tmp_path / "admin.sock").exists()


def test_a_final_snapshot_that_fails_is_said_and_the_exit_status_is_not_zero(redis_server: RedisServer,
                                                                               tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([EXE, "run", "--config", str(_config(tmp_path, port, redis_server.url))], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 30
        while True:
            assert proc.poll() is None and time.monotonic() < end, "the engine did not start"
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=0.2)
                break
            except OSError:
                time.sleep(0.05)
        conn.sendall(msgpack.packb([cart_event(f"c{i}") for i in range(20)]))
        assert msgpack.unpackb(conn.recv(65536))["accepted"] == 20
        conn.close()
        redis_server.kill9()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 4, (out[-500:], err[-500:])
    assert "the final snapshot failed" in err and "in the final snapshot" not in out


def test_a_second_signal_while_stopping_exits_at_once(redis_server: RedisServer, tmp_path: Path) -> None:
    """The final snapshot hangs (Redis stopped with SIGSTOP: it neither answers nor refuses); a second
    SIGTERM ends the engine at once, exit 5, saying the final snapshot was not written."""
    port = free_port()
    proc = subprocess.Popen([EXE, "run", "--config", str(_config(tmp_path, port, redis_server.url))], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert redis_server.proc is not None
    try:
        end = time.monotonic() + 30
        while True:
            assert proc.poll() is None and time.monotonic() < end, "the engine did not start"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        redis_server.proc.send_signal(signal.SIGSTOP)
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout is not None
        while "cartwheel: stopping" not in proc.stdout.readline():
            pass
        time.sleep(0.5)
        assert proc.poll() is None  # still stopping: the snapshot waits for Redis
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 5, (proc.returncode, err[-800:])
    assert "second signal: stopped at once, without the final snapshot" in err
