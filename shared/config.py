"""Configuration, read only from environment variables (12-factor), with documented defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Settings:
    redis_url: str
    redis_sentinels: tuple[tuple[str, int], ...]  # when set, the primary is found through Redis Sentinel
    redis_sentinel_service: str
    key_prefix: str
    partitions: int
    lease_ttl_ms: int
    batch_size: int | None  # None: each projection's own (``Projection.batch_size``)
    idempotency_ttl_s: int
    # Secrets stay out of the settings' repr, so a logged or printed Settings shows none of them.
    cpr_hmac_secret: bytes = field(repr=False)
    master_key: bytes = field(repr=False)
    session_secret: str = field(repr=False)
    retry_intervals: tuple[int, ...]  # seconds between a failed job's retries; their number is the bound
    ready_max_lag: int  # /readyz answers 503 when a projection is further behind the log than this
    # When set, /metrics and /readyz's figures answer only ``Authorization: Bearer <token>`` (Prometheus'
    # ``authorization``).
    metrics_token: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            redis_url=env.get("REDIS_URL", ""),
            redis_sentinels=tuple(
                (host, int(port))
                for host, _, port in (s.strip().rpartition(":") for s in env.get("REDIS_SENTINELS", "").split(","))
                if host
            ),
            redis_sentinel_service=env.get("REDIS_SENTINEL_SERVICE", "mymaster"),
            key_prefix=env.get("CASEFLOW_KEY_PREFIX", "cf"),
            partitions=int(env.get("CASEFLOW_PARTITIONS", "16")),
            lease_ttl_ms=int(env.get("CASEFLOW_LEASE_TTL_MS", "10000")),
            batch_size=int(env["CASEFLOW_BATCH_SIZE"]) if env.get("CASEFLOW_BATCH_SIZE") else None,
            idempotency_ttl_s=int(env.get("CASEFLOW_IDEMPOTENCY_TTL_S", str(7 * 24 * 3600))),
            cpr_hmac_secret=_secret(env, "CASEFLOW_CPR_SECRET").encode(),
            master_key=_secret(env, "CASEFLOW_MASTER_KEY").encode(),
            session_secret=_secret(env, "CASEFLOW_SESSION_SECRET"),
            retry_intervals=tuple(int(s) for s in env.get("CASEFLOW_RETRY_INTERVALS", "2,10,30").split(",") if s),
            ready_max_lag=int(env.get("CASEFLOW_READY_MAX_LAG", "1000")),
            metrics_token=_metrics_token(env),
        )


PLACEHOLDER = "change-me"  # what .env.example says for each secret

# Keys every copy of this code knows: for the embedded store of `caseflow-suite up` and for tests, never for a
# Redis that keeps citizens' data.
DEVELOPMENT_SECRETS = {
    "CASEFLOW_CPR_SECRET": "dev-only-not-secret",
    "CASEFLOW_MASTER_KEY": "dev-only-master-key",
    "CASEFLOW_SESSION_SECRET": "dev-only-session-secret",
}


def _metrics_token(env: Mapping[str, str]) -> str:
    """Unset or empty, /metrics asks for no token (compose requires one); the example's placeholder is refused."""
    value = env.get("CASEFLOW_METRICS_TOKEN", "").strip()
    if value == PLACEHOLDER:
        raise ValueError(f"CASEFLOW_METRICS_TOKEN is still the example's placeholder ({PLACEHOLDER!r}): set your own")
    return value


def _secret(env: Mapping[str, str], name: str) -> str:
    """A secret from the environment. Unset, it is the development key only where no Redis is configured (a
    test, or code handed its connection): a process that connects to a Redis of its own would otherwise seal
    every citizen's data, and pseudonymise every CPR number, with a key anyone can read in the repository.
    The example file's placeholder and an empty value are refused for the same reason."""
    value = env.get(name)
    if value is None:
        if env.get("REDIS_URL") or env.get("REDIS_SENTINELS", "").strip():
            raise ValueError(
                f"{name} is not set: a process with a Redis configured needs the deployment's own secrets "
                "(see .env.example); only the embedded store of `caseflow-suite up` uses development keys"
            )
        value = DEVELOPMENT_SECRETS[name]
    if value == PLACEHOLDER:
        raise ValueError(f"{name} is still the example's placeholder ({PLACEHOLDER!r}): set a secret of your own")
    if not value.strip():
        raise ValueError(f"{name} is empty: set a secret of your own")
    return value
