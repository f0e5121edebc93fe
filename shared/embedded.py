"""The embedded default store: fakeredis served over TCP, for a local run with no Redis installed.

Several processes (intake, reporting, workers) share it over loopback. It keeps
everything in this process's memory: it is NOT durable, and says so in INFO
(``caseflow_embedded:1``), which the services' durability check reports.

fakeredis has no INFO command, which RQ calls for the server version; the
shim below answers the two sections anything here asks for.
"""

from __future__ import annotations

import threading

from fakeredis import TcpFakeServer
from fakeredis._commands import command  # the documented way fakeredis defines commands
from fakeredis._socket._fakesocket import FakeSocket

_INFO = (
    "# Server\r\nredis_version:7.4.0\r\nredis_mode:standalone\r\ncaseflow_embedded:1\r\n"
    "# Persistence\r\naof_enabled:0\r\nrdb_bgsave_in_progress:0\r\n"
)


def _info(self: FakeSocket, *sections: bytes) -> bytes:
    return _INFO.encode()


def _install_info_command() -> None:
    if not hasattr(FakeSocket, "info"):
        _info.__name__ = "info"
        setattr(FakeSocket, "info", command((), (bytes,))(_info))  # noqa: B010 (fakeredis types no such attribute)


class EmbeddedRedis:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        _install_info_command()
        self._server = TcpFakeServer((host, port), server_type="redis")
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
