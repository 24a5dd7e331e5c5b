"""Disk cache of verified records, keyed on everything that affects the output.

Key = sha256 over a canonical JSON document of: backend and model identity, instructor mode,
prompt-set hash, taxonomy hash, response-schema hash, sampling settings and the paper text.
Timeouts, retries, concurrency and paths are deliberately absent: changing them must not
re-run a single paper. Only valid records are ever stored.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache

from .errors import CacheError

KEY_VERSION = 1


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json({"v": KEY_VERSION, **parts}).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheStats:
    directory: str
    entries: int
    size_bytes: int
    hits: int
    misses: int


class ResponseCache:
    """A thin, typed face on `diskcache.Cache` that reports trouble as `CacheError`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.hits = 0
        self.misses = 0
        try:
            directory.mkdir(parents=True, exist_ok=True)
            # Several processes may share one directory (two runs at once): diskcache's
            # SQLite index handles that; a generous timeout rides out their locks.
            self._cache = diskcache.Cache(str(directory), timeout=60, size_limit=2**40)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise CacheError(f"cannot open cache directory {directory}: {exc}") from exc

    def get_raw(self, key: str) -> str | None:
        """The stored JSON text: the fast path for re-runs that only copy records out."""
        try:
            raw = self._cache.get(key)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise CacheError(f"cannot read cache {self.directory}: {exc}") from exc
        if raw is None:
            self.misses += 1
            return None
        self.hits += 1
        return str(raw)

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.get_raw(key)
        if raw is None:
            return None
        value: dict[str, Any] = json.loads(raw)
        return value

    def __contains__(self, key: str) -> bool:
        try:
            return key in self._cache
        except (OSError, sqlite3.DatabaseError) as exc:
            raise CacheError(f"cannot read cache {self.directory}: {exc}") from exc

    def set(self, key: str, value: dict[str, Any]) -> None:
        try:
            self._cache.set(key, canonical_json(value))
        except (OSError, sqlite3.DatabaseError) as exc:
            raise CacheError(f"cannot write cache {self.directory}: {exc}") from exc

    def stats(self) -> CacheStats:
        try:
            return CacheStats(
                directory=str(self.directory),
                entries=len(self._cache),
                size_bytes=int(self._cache.volume()),
                hits=self.hits,
                misses=self.misses,
            )
        except (OSError, sqlite3.DatabaseError) as exc:
            raise CacheError(f"cannot read cache {self.directory}: {exc}") from exc

    def clear(self) -> int:
        try:
            return int(self._cache.clear())
        except (OSError, sqlite3.DatabaseError) as exc:
            raise CacheError(f"cannot clear cache {self.directory}: {exc}") from exc

    def close(self) -> None:
        self._cache.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
