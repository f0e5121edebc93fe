"""Running against Redis Sentinel: the services find the primary through it (a real redis-server and sentinel)."""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import date
from pathlib import Path

import pytest
import redis

from shared.bootstrap import connect, event_store
from shared.config import DEVELOPMENT_SECRETS, Settings
from shared.domain.events import ReferralReceived
from shared.events import NewEvent
from shared.events.envelope import start_of_day
from tests.conftest import free_port, start_redis_server


@pytest.mark.slow
def test_the_log_works_through_sentinel(tmp_path: Path) -> None:
    primary, url = start_redis_server(tmp_path)
    port = url.rsplit(":", 1)[1].split("/")[0]
    sentinel_port = free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\nsentinel monitor caseflow 127.0.0.1 {port} 1\ndir {tmp_path}\n"
    )
    binary = shutil.which("redis-server")
    assert binary is not None
    sentinel = subprocess.Popen([binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                redis.Redis(port=sentinel_port).sentinel_get_master_addr_by_name("caseflow")
                break
            except (redis.ConnectionError, redis.ResponseError):
                assert time.monotonic() < deadline, "sentinel did not start"
                time.sleep(0.1)
        settings = Settings.from_env(
            {
                **DEVELOPMENT_SECRETS,
                "REDIS_SENTINELS": f"127.0.0.1:{sentinel_port}",
                "REDIS_SENTINEL_SERVICE": "caseflow",
            }
        )
        assert settings.redis_sentinels == (("127.0.0.1", sentinel_port),)
        store = event_store(connect(settings), settings)
        event = NewEvent("case-1", ReferralReceived("demo", "reden", True), start_of_day(date.today()), "test")
        store.append("case-1", [event], expected_version=0)
        assert redis.Redis.from_url(url).llen(store.keys.stream("case-1")) == 1  # written to the primary
        assert store.read_stream("case-1")[0].event_id == event.event_id
    finally:
        sentinel.terminate()
        sentinel.wait(timeout=10)
        primary.terminate()
        primary.wait(timeout=10)
