"""The embedded default store: fakeredis served over TCP, for a local run with no Redis installed.

Several processes (intake, reporting, workers) share it over loopback. It keeps
everything in this process's memory: it is NOT durable, and says so in INFO
(``caseflow_embedded:1``), which the services' durability check reports.

fakeredis has no INFO command, which RQ calls for the server version; the
shim below answers the two sections anything here asks for. Its BLMOVE (2.40)
answers at once instead of blocking, so RQ's workers, which wait for a job with
BLMOVE, asked again and again: an idle suite kept a core busy. The shim's BLMOVE
blocks, as BRPOPLPUSH does in fakeredis.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from fakeredis import TcpFakeServer
from fakeredis import _msgs as msgs
from fakeredis._command_args_parsing import Timeout
from fakeredis._commands import command  # the documented way fakeredis defines commands
from fakeredis._core import CommandItem
from fakeredis._helpers import SimpleError, casematch
from fakeredis._socket._fakesocket import FakeSocket

_INFO = (
    "# Server\r\nredis_version:7.4.0\r\nredis_mode:standalone\r\ncaseflow_embedded:1\r\n"
    "# Persistence\r\naof_enabled:0\r\nrdb_bgsave_in_progress:0\r\n"
)


def _info(self: FakeSocket, *sections: bytes) -> bytes:
    return _INFO.encode()


def _blmove_pass(
    self: FakeSocket, source: bytes, destination: bytes, wherefrom: bytes, whereto: bytes, first_pass: bool
) -> Any:
    """One try of BLMOVE (None: nothing to move yet), the lists read afresh on each try."""
    src = CommandItem(source, self._db, item=self._db.get(source), default=[])
    if not isinstance(src.value, list):
        if first_pass:
            raise SimpleError(msgs.WRONGTYPE_MSG)
        return None
    if not src.value:
        return None
    dst = CommandItem(destination, self._db, item=self._db.get(destination), default=[])
    if not isinstance(dst.value, list):
        raise SimpleError(msgs.WRONGTYPE_MSG)
    element = src.value.pop(0) if casematch(wherefrom, b"left") else src.value.pop()
    dst.value.insert(0, element) if casematch(whereto, b"left") else dst.value.append(element)
    src.updated()
    src.writeback()
    if destination != source:
        dst.updated()
        dst.writeback()
    return element


def _blmove(
    self: FakeSocket, source: bytes, destination: bytes, wherefrom: bytes, whereto: bytes, timeout: float
) -> Any:
    if not all(casematch(end, b"left") or casematch(end, b"right") for end in (wherefrom, whereto)):
        raise SimpleError(msgs.SYNTAX_ERROR_MSG)
    return self._blocking(timeout, functools.partial(_blmove_pass, self, source, destination, wherefrom, whereto))


def install_shims() -> None:
    if not hasattr(FakeSocket, "info"):
        _info.__name__ = "info"
        setattr(FakeSocket, "info", command((), (bytes,))(_info))  # noqa: B010 (fakeredis types no such attribute)
    if FakeSocket.blmove.__module__ != __name__:
        _blmove.__name__ = "blmove"
        blocking = command(name="BLMOVE", fixed=(bytes, bytes, bytes, bytes, Timeout), flags=msgs.FLAG_NO_SCRIPT)
        setattr(FakeSocket, "blmove", blocking(_blmove))  # noqa: B010


class EmbeddedRedis:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        install_shims()
        self._server = TcpFakeServer((host, port), server_type="redis")
        # Connections are served by daemon threads, which stopping does not wait for: a worker's thread may be
        # blocked in BLMOVE, with RQ's timeout (45 s), after the worker itself is gone.
        self._server.daemon_threads = True
        host_bound, self.port = self._server.server_address[:2]
        self.host = host_bound.decode() if isinstance(host_bound, bytes) else str(host_bound)
        self._thread = threading.Thread(target=self._server.serve_forever, name="embedded-redis", daemon=True)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
