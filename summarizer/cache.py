"""Disk cache of verified records, keyed on everything that affects the output.

Key = sha256 over a canonical JSON document of: backend and model identity, instructor mode,
prompt-set hash, taxonomy hash, response-schema hash, sampling settings and the paper text.
Timeouts, retries, concurrency and paths are deliberately absent: changing them must not
re-run a single paper. Only valid records are ever stored.

The cache only ever holds copies of records, so losing it costs time, never results. That
decides how trouble is handled: `ResponseCache` reports it as a `CacheError` that says what
to do (for one-off commands, where the user is watching), and `RunCache`, used by batch
runs that are left alone for hours, turns it into a warning and carries on: a damaged index
is moved aside and replaced by an empty one, a lock held too long or a full disk switches the
cache off for the rest of the run. A cache that can be read but not written (a read-only
mount) is read, and nothing is added to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache

from .errors import CacheError, CacheProblem

KEY_VERSION = 1
DB_NAME = "cache.db"  # diskcache's SQLite index inside the cache folder (diskcache.core.DBNAME)
#: Seconds to wait for another process's lock on the index. Writes take milliseconds, so
#: waiting this long means the holder is stuck (or is an open sqlite3 shell), not busy.
LOCK_TIMEOUT_S = 60.0
_TROUBLE = (OSError, sqlite3.Error, diskcache.Timeout)


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


def _problem(exc: BaseException) -> CacheProblem:
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
        return "corrupt"
    if isinstance(exc, diskcache.Timeout) or name in ("SQLITE_BUSY", "SQLITE_LOCKED"):
        return "locked"
    return "unusable"


def _damaged_entry(exc: BaseException) -> bool:
    # One stored value whose bytes were overwritten: that entry is lost, the index itself is fine.
    return isinstance(exc, sqlite3.OperationalError) and str(exc).startswith("Could not decode")


def _brief(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def cache_error(action: str, directory: Path, exc: BaseException, timeout_s: float = LOCK_TIMEOUT_S) -> CacheError:
    """A `CacheError` for `exc`, naming the file at fault and what the user can do about it."""
    problem, db = _problem(exc), directory / DB_NAME
    if problem == "corrupt":
        message = (
            f"the cache index {db} is damaged ({_brief(exc)}); delete the folder {directory} (it holds only "
            "copies of finished records) or run with --no-cache"
        )
        return CacheError(message, path=db, problem=problem)
    if problem == "locked":
        message = (
            f"the cache index {db} stayed locked by another process for more than {timeout_s:g}s (a stuck run, "
            "or an open sqlite3 shell?); stop that process, use another --cache-dir, or run with --no-cache"
        )
        return CacheError(message, path=db, problem=problem)
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _brief(exc)
    message = (
        f"cannot {action} the cache {directory}: {reason}; check that folder's permissions and free space, "
        "use another --cache-dir, or run with --no-cache"
    )
    return CacheError(message, path=directory, problem=problem)


def _open_index(directory: Path, timeout_s: float) -> diskcache.Cache:
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / DB_NAME
    if db.exists():
        # diskcache's own start-up retries a locked index for a fixed 60 s whatever its timeout;
        # asking for the write lock first makes a lock held too long fail within `timeout_s`.
        with contextlib.closing(sqlite3.connect(db, timeout=timeout_s, isolation_level=None)) as probe:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
    return diskcache.Cache(str(directory), timeout=timeout_s, size_limit=2**40)


def _unwritable(directory: Path) -> bool:
    """Whether the cache folder or its index cannot be written (a read-only mount, no permission)."""
    db = directory / DB_NAME
    return not os.access(directory, os.W_OK) or (db.exists() and not os.access(db, os.W_OK))


class _ReadOnlyIndex:
    """Reads a diskcache index that cannot be written: diskcache opens one only with a write lock.

    `immutable=1` because SQLite would otherwise need to create the WAL's shared-memory file
    beside the index, which a read-only mount refuses; nothing writes through that mount.
    """

    def __init__(self, directory: Path) -> None:
        self._disk = diskcache.Disk(str(directory))
        uri = (directory / DB_NAME).resolve().as_uri() + "?mode=ro&immutable=1"
        self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        self._db.execute("SELECT count(*) FROM Cache").fetchone()  # a file that is not an index fails here

    def get(self, key: str) -> Any:
        db_key, raw = self._disk.put(key)
        row = self._db.execute(
            "SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = ? "
            "AND (expire_time IS NULL OR expire_time > ?)",
            (db_key, raw, time.time()),
        ).fetchone()
        return None if row is None else self._disk.fetch(row[0], row[1], row[2], False)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM Cache").fetchone()[0])

    def volume(self) -> int:
        page_count = self._db.execute("PRAGMA page_count").fetchone()[0]
        page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        files = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM Cache WHERE filename IS NOT NULL").fetchone()[0]
        return int(page_count * page_size + files)

    def close(self) -> None:
        self._db.close()


class ResponseCache:
    """A thin, typed face on `diskcache.Cache` that reports trouble as `CacheError`.

    A cache that cannot be written (a read-only mount) is read, and nothing is added to it.

    Several processes may share one directory (two runs at once): diskcache's SQLite index
    serialises their writes, and `timeout_s` (default `LOCK_TIMEOUT_S`) rides out their locks.
    """

    def __init__(self, directory: Path, *, timeout_s: float | None = None) -> None:
        self.directory = Path(directory)
        self.timeout_s = LOCK_TIMEOUT_S if timeout_s is None else timeout_s
        self.hits = 0
        self.misses = 0
        self._cache: diskcache.Cache | _ReadOnlyIndex | None = None
        self._connect()

    @property
    def read_only(self) -> bool:
        """True when the cache is read but nothing is written to it (its folder cannot be written)."""
        return isinstance(self._cache, _ReadOnlyIndex)

    @property
    def db_path(self) -> Path:
        return self.directory / DB_NAME

    @property
    def active(self) -> bool:
        """False once trouble has switched the cache off (only a `RunCache` does that)."""
        return self._cache is not None

    def _connect(self) -> None:
        try:
            self._cache = _open_index(self.directory, self.timeout_s)
        except _TROUBLE as exc:
            if self.db_path.is_file() and _unwritable(self.directory):
                try:
                    self._cache = _ReadOnlyIndex(self.directory)
                except _TROUBLE:
                    pass  # not readable either: report the first error
                else:
                    self._opened_read_only()
                    return
            self._trouble("open", exc)

    def _opened_read_only(self) -> None:
        """Called once when the cache can be read but not written; a batch run says so."""

    def _trouble(self, action: str, exc: BaseException) -> None:
        """What to do when the cache fails: here, stop with a clear error."""
        raise cache_error(action, self.directory, exc, self.timeout_s) from exc

    def get_raw(self, key: str) -> str | None:
        """The stored JSON text: the fast path for re-runs that only copy records out."""
        raw = None
        if self._cache is not None:
            try:
                raw = self._cache.get(key)
            except _TROUBLE as exc:
                if not _damaged_entry(exc):  # a damaged entry is a miss: its paper is redone and overwrites it
                    self._trouble("read", exc)
        if raw is None:
            self.misses += 1
            return None
        self.hits += 1
        return str(raw)

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.get_raw(key)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        # A damaged entry is a miss: the paper is redone and its fresh record overwrites it.
        return value if isinstance(value, dict) else None

    def __contains__(self, key: str) -> bool:
        if self._cache is None:
            return False
        try:
            return key in self._cache
        except _TROUBLE as exc:
            self._trouble("read", exc)
            return False

    def set(self, key: str, value: dict[str, Any]) -> None:
        if not isinstance(self._cache, diskcache.Cache):  # off, or read-only
            return
        try:
            self._cache.set(key, canonical_json(value))
        except _TROUBLE as exc:
            self._trouble("write", exc)

    def stats(self) -> CacheStats:
        entries = size = 0
        if self._cache is not None:
            try:
                entries, size = len(self._cache), int(self._cache.volume())
            except _TROUBLE as exc:
                self._trouble("read", exc)
        return CacheStats(str(self.directory), entries, size, self.hits, self.misses)

    def clear(self) -> int:
        if isinstance(self._cache, _ReadOnlyIndex):
            raise CacheError(
                f"cannot clear the cache {self.directory}: the folder cannot be written (a read-only mount?)",
                path=self.directory,
            )
        if self._cache is None:
            return 0
        try:
            return int(self._cache.clear())
        except _TROUBLE as exc:
            self._trouble("clear", exc)
            return 0

    def close(self) -> None:
        if self._cache is not None:
            with contextlib.suppress(*_TROUBLE):
                self._cache.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RunCache(ResponseCache):
    """The cache of an unattended batch run: trouble is reported through `warn`, never raised.

    A damaged index is moved aside (kept, for whoever wants to look) and replaced by an empty
    one; any other trouble (a lock held past the timeout, a read-only or full disk) switches
    the cache off for the rest of the run. Either way the run's records are unaffected: the
    papers the cache would have served are simply sent to the model again.
    """

    def __init__(self, directory: Path, warn: Callable[[str], None], *, timeout_s: float | None = None) -> None:
        self._warn = warn
        self._inode: int | None = None
        self._healing = False
        super().__init__(directory, timeout_s=timeout_s)

    def _connect(self) -> None:
        super()._connect()
        if self._cache is not None:
            with contextlib.suppress(OSError):
                self._inode = self.db_path.stat().st_ino

    def _opened_read_only(self) -> None:
        self._warn(
            f"the cache {self.directory} cannot be written (a read-only mount?): this run reads it but adds "
            "nothing to it"
        )

    def _trouble(self, action: str, exc: BaseException) -> None:
        error = cache_error(action, self.directory, exc, self.timeout_s)
        broken, self._cache = self._cache, None
        if broken is not None:
            with contextlib.suppress(*_TROUBLE):
                broken.close()
        if error.problem == "corrupt" and not self._healing:
            self._healing = True  # once: a fresh index that is damaged again is not healed in a loop
            try:
                aside = self._move_aside()
                self._connect()
            finally:
                self._healing = False
            if self._cache is not None:
                where = f"moved it to {aside}" if aside else "it had been replaced already"
                self._warn(
                    f"the cache index {self.db_path} is damaged ({_brief(exc)}): {where} and carried on with an empty "
                    "cache; no record is lost, the papers it held are sent to the model again"
                )
            return  # else reopening failed, and said why
        self._warn(f"{error.message}. This run carries on without the cache; no record is lost")

    def _move_aside(self) -> Path | None:
        """Rename the damaged index (and its WAL files) so a fresh one can be created; None if gone."""
        db = self.db_path
        try:
            inode = db.stat().st_ino
        except OSError:
            return None
        if self._inode is not None and inode != self._inode:
            return None  # not the file this process opened: someone else moved the broken one aside
        aside = db.with_name(f"{DB_NAME}.broken-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        try:
            for suffix in ("-wal", "-shm", ""):
                source = db.with_name(DB_NAME + suffix)
                if source.exists():
                    os.replace(source, aside.with_name(aside.name + suffix))
        except OSError:
            return None
        self._inode = None
        return aside
