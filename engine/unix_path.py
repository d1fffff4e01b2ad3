"""Taking a UNIX socket path for a listener without stealing it from a live process.

A socket file left by an engine that died is stale and is replaced; one that a process still answers on
belongs to it: a second engine pointed at the same path (the ingest or the admin socket) must fail to
start, not unlink it and silently take the first engine's clients.
"""
from __future__ import annotations

import errno
import socket
from pathlib import Path

__all__ = ["answers", "refuse_live", "take_unix_path"]


def answers(path: str) -> bool:
    """Whether something accepts connections on the UNIX socket ``path`` (a local connect is immediate)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def refuse_live(path: Path, key: str = "") -> None:
    """Raise ``OSError(EADDRINUSE)`` when another process answers on the UNIX socket ``path`` (``key``: the
    config key it comes from, named in the message)."""
    if path.is_socket() and answers(str(path)):
        raise OSError(errno.EADDRINUSE, f"{key + ': ' if key else ''}another process is listening on {path}")


def take_unix_path(path: Path) -> None:
    """Make ``path`` free for a new listener: its directory created, a stale socket removed.

    Raises:
        OSError: ``EADDRINUSE`` when another process answers on it; the directory cannot be created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    refuse_live(path)
    if path.is_socket():
        path.unlink()
