"""`cartwheel run` when what it should listen on is taken by a running engine."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from engine.app import Engine
from tests.engine.conftest import Client, cart_event, engine_config, start_engine

EXE = str(Path(sys.executable).parent / "cartwheel")


async def test_run_refuses_an_ingest_socket_a_running_engine_listens_on(tmp_path: Path) -> None:
    """A second engine (its own admin socket, store and port) given the same ingest_unix unlinked the
    running engine's socket and bound its own: the shop's events went to the wrong engine, silently."""
    a: Engine = await start_engine(engine_config(tmp_path), tmp_path)
    try:
        other = tmp_path / "b"
        other.mkdir()
        cfg = other / "b.toml"
        cfg.write_text(f'[engine]\ningest_tcp = "127.0.0.1:0"\ningest_unix = "{tmp_path / "ingest.sock"}"\n'
                       f'admin_unix = "{other / "admin.sock"}"\nstore = "file:{other / "state"}"\n')
        proc = await asyncio.create_subprocess_exec(EXE, "run", "--config", str(cfg), cwd=other,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 20)
        except TimeoutError:
            proc.terminate()
            await proc.communicate()
            raise AssertionError("the second engine started on the running engine's ingest socket") from None
        assert proc.returncode == 3 and b"ingest.sock" in err, (out, err)
        client = await Client.unix(a)  # the running engine still owns its socket
        assert (await client.frame(cart_event("c1")))["accepted"] == 1
        await client.close()
        assert a.registry.cart("shop1", "c1") is not None
    finally:
        await a.stop()


async def test_sigterm_while_waiting_for_the_store_stops_at_once(tmp_path: Path) -> None:
    """SIGTERM went unheard during start: with the store down, `cartwheel run` kept retrying it for
    its 30 s and then exited 3 "cannot start", however often it was told to stop."""
    import signal
    import socket
    import time

    with socket.socket() as s:  # a port nobody listens on: the store "is down"
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[engine]\ningest_tcp = "127.0.0.1:0"\nstore = "redis://127.0.0.1:{port}/0"\n')
    proc = await asyncio.create_subprocess_exec(EXE, "run", "--config", str(cfg), cwd=tmp_path,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    seen = b""
    while b"not available" not in seen:  # the engine is waiting for its store
        line = await asyncio.wait_for(proc.stderr.readline(), 20)
        assert line, seen
        seen += line
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    except TimeoutError:
        proc.kill()
        await proc.communicate()
        raise
    assert time.monotonic() - t0 < 10, "SIGTERM was not heard while the engine waited for its store"
    assert proc.returncode == 0 and b"stopped while starting" in err, (proc.returncode, err[-500:])


def test_run_names_the_listener_address_it_cannot_use(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A listener host that does not resolve (a typo: 256.1.1.1 passes the config's HOST:PORT check)
    stopped the start with "cannot start: [Errno -2] Name or service not known": no key, no address."""
    from engine.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[engine]\ningest_tcp = "256.1.1.1:7780"\ningest_unix = ""\nadmin_unix = "{tmp_path / "a.sock"}"\n'
                   f'store = "file:{tmp_path / "state"}"\n')
    assert main(["run", "--config", str(cfg)]) == 3
    err = capsys.readouterr().err
    assert "engine.ingest_tcp" in err and "256.1.1.1:7780" in err, err
