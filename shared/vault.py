"""Per-citizen encryption keys: personal data is sealed with them, and erasure deletes them (crypto-shredding).

Personal fields (name or alias, birth date, free text) are sealed in intake
before an event exists, so the log, the read models and every export hold only
ciphertext; views reveal it on the way out. Deleting a citizen's key makes all
of it unreadable at once, wherever it was copied, backups included, while the
anonymous facts around it (status, dates, age band) keep counting.

Citizen keys are AES-256-GCM keys, stored wrapped by a master key that comes
from the environment and is never in Redis, so a Redis dump alone reveals
nothing. Sealed values look like ``sealed:v1:<citizen id>:<base64 nonce+ciphertext>``.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import redis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ERASED = "[erased]"
_PREFIX = "sealed:v1:"


def _sealed(key: bytes, citizen_id: str, plaintext: str) -> str:
    nonce = os.urandom(12)
    blob = nonce + AESGCM(key).encrypt(nonce, plaintext.encode(), citizen_id.encode())
    return f"{_PREFIX}{citizen_id}:{base64.b64encode(blob).decode()}"


@dataclass(frozen=True)
class NewCitizenKey:
    """A new citizen's key, sealing before it is stored; ``store`` is the command that stores it (sent with the
    citizen's first append), ``stored`` tells from that command's reply that it was."""

    citizen_id: str
    key: bytes = field(repr=False)
    wrapped: bytes = field(repr=False)
    name: str

    def seal(self, plaintext: str | None) -> str | None:
        return None if plaintext is None else _sealed(self.key, self.citizen_id, plaintext)

    def store(self) -> tuple[str, str, bytes, str, str]:
        """The command that stores it. NX GET: harmless if sent twice, and a key already there (never, for a
        citizen id just made) shows in the reply."""
        return ("SET", self.name, self.wrapped, "NX", "GET")

    def stored(self, reply: Any) -> bool:
        return reply is None or reply == self.wrapped


class Vault:
    def __init__(self, connection: redis.Redis, prefix: str, master_key: bytes) -> None:
        self.redis = connection
        self.prefix = prefix
        self._master = AESGCM(hashlib.sha256(master_key).digest())
        self._remembered: ContextVar[dict[str, bytes] | None] = ContextVar(f"vault-{id(self)}", default=None)

    def key_name(self, citizen_id: str) -> str:
        return f"{self.prefix}:vault:citizen:{citizen_id}"

    @contextmanager
    def remembering(self) -> Iterator[None]:
        """Within this (one HTTP request), a citizen's key is fetched once: a referral seals the alias and its
        answer reveals it with one read of the key. Never longer: an erasure must hold everywhere at once."""
        token = self._remembered.set({})
        try:
            yield
        finally:
            self._remembered.reset(token)

    def new_citizen(self, citizen_id: str) -> NewCitizenKey:
        """A key for a citizen id just made, not stored yet: the citizen's first append stores it in its round
        trip (``NewCitizenKey.store``), so a referral asks the vault nothing of its own."""
        key = AESGCM.generate_key(256)
        if (remembered := self._remembered.get()) is not None:
            remembered[citizen_id] = key
        return NewCitizenKey(citizen_id, key, self._wrap(citizen_id, key), self.key_name(citizen_id))

    def _wrap(self, citizen_id: str, key: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._master.encrypt(nonce, key, citizen_id.encode())

    def _key(self, citizen_id: str, create: bool) -> bytes | None:
        remembered = self._remembered.get()
        if remembered is not None and citizen_id in remembered:
            return remembered[citizen_id]
        name = self.key_name(citizen_id)
        if create:  # one round trip: our fresh key is set unless there is one, and then that one comes back
            fresh = self._wrap(citizen_id, AESGCM.generate_key(256))
            wrapped: Any = self.redis.set(name, fresh, nx=True, get=True) or fresh
        else:
            wrapped = self.redis.get(name)
        if wrapped is None:
            return None
        assert isinstance(wrapped, bytes)
        key = self._master.decrypt(wrapped[:12], wrapped[12:], citizen_id.encode())
        if remembered is not None:
            remembered[citizen_id] = key
        return key

    def seal(self, citizen_id: str, plaintext: str | None) -> str | None:
        if plaintext is None:
            return None
        key = self._key(citizen_id, create=True)
        assert key is not None
        return _sealed(key, citizen_id, plaintext)

    def reveal(self, sealed: str | None) -> str | None:
        """The plaintext, or ``[erased]`` once the citizen's key is gone. Unsealed text passes through."""
        if sealed is None or not sealed.startswith(_PREFIX):
            return sealed
        citizen_id, _, encoded = sealed.removeprefix(_PREFIX).rpartition(":")
        key = self._key(citizen_id, create=False)
        if key is None:
            return ERASED
        blob = base64.b64decode(encoded)
        try:
            return AESGCM(key).decrypt(blob[:12], blob[12:], citizen_id.encode()).decode()
        except InvalidTag:
            return ERASED

    def erase(self, citizen_id: str) -> None:
        self.redis.delete(self.key_name(citizen_id))
        if (remembered := self._remembered.get()) is not None:
            remembered.pop(citizen_id, None)

    def has_key(self, citizen_id: str) -> bool:
        return bool(self.redis.exists(self.key_name(citizen_id)))


def export_keys(vault: Vault, path: str) -> int:
    """Write every citizen key, still wrapped by the master key, to a gzip JSONL file. Returns how many."""
    import gzip
    import json

    count = 0
    with gzip.open(path, "wt") as out:
        for name in vault.redis.scan_iter(match=f"{vault.prefix}:vault:citizen:*", count=1000):
            wrapped = vault.redis.get(name)
            if not isinstance(wrapped, bytes):
                continue
            citizen = name.decode().rsplit(":", 1)[1]
            out.write(json.dumps({"citizen_id": citizen, "wrapped": base64.b64encode(wrapped).decode()}) + "\n")
            count += 1
    return count


def import_keys(vault: Vault, path: str, is_erased: Callable[[str], bool]) -> tuple[int, int]:
    """Restore wrapped keys, skipping every citizen the log says was erased. Returns (restored, skipped)."""
    import gzip
    import json

    restored = skipped = 0
    with gzip.open(path, "rt") as source:
        for line in source:
            record = json.loads(line)
            if is_erased(record["citizen_id"]):
                skipped += 1  # an old backup must not bring an erased citizen's data back
                continue
            vault.redis.set(vault.key_name(record["citizen_id"]), base64.b64decode(record["wrapped"]), nx=True)
            restored += 1
    return restored, skipped
