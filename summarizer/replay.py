"""A reviewable text store of model outcomes, keyed exactly like the disk cache.

The eval gate runs in CI without network or key: outcomes for the gold set are committed as
JSON lines (sorted by paper id, so a refresh reads as a diff), and an unchanged prompt,
taxonomy, schema, model and sampling replays them in seconds. Any change to those changes
the key and misses the store: `summarizer eval` then runs the model and writes the refreshed
store (to be committed), while `summarizer eval --check` stops at once and says so, unless
it is given --allow-live.
Unlike the disk cache it also keeps failures: a paper that fails must replay as a failure,
not re-run live on every CI pass.

One store holds the outcomes of several models (the committed one: the embedded model's). A run
prunes only its own model's stale entries, and a run that changed nothing leaves the file alone:
an eval against another backend once wiped the embedded answers CI replays.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import InputError
from .schemas import Failure, Result


class ReplayStore:
    def __init__(self, entries: dict[str, dict[str, Any]] | None = None) -> None:
        self._entries = entries or {}
        self._changed = False

    @classmethod
    def load(cls, path: Path) -> ReplayStore:
        entries: dict[str, dict[str, Any]] = {}
        if not path.exists():
            return cls(entries)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                entries[entry["key"]] = entry
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InputError(f"invalid replay entry: {exc}", path=path, line=number) from exc
        return cls(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: str) -> Result | Failure | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if "result" in entry:
            return Result.model_validate(entry["result"])
        return Failure.model_validate(entry["failure"])

    def put(self, key: str, paper_id: str, outcome: Result | Failure, *, model: str | None = None) -> None:
        """Store `outcome`; `model` (the backend's label) is required for a failure, which does not carry it."""
        kind = "result" if isinstance(outcome, Result) else "failure"
        entry: dict[str, Any] = {"key": key, "paper_id": paper_id, kind: outcome.model_dump(mode="json")}
        owner = model or (outcome.provenance.model if isinstance(outcome, Result) else None)
        if owner is not None:
            entry["model"] = owner
        if self._entries.get(key) != entry:
            self._entries[key] = entry
            self._changed = True

    @staticmethod
    def model_of(entry: dict[str, Any]) -> str | None:
        """The label of the model whose outcome `entry` is (older entries: from the record's provenance)."""
        if isinstance(entry.get("model"), str):
            return str(entry["model"])
        result = entry.get("result")
        provenance = result.get("provenance") if isinstance(result, dict) else None
        model = provenance.get("model") if isinstance(provenance, dict) else None
        return model if isinstance(model, str) else None

    def save(self, path: Path, *, keep: set[str] | None = None, model: str | None = None) -> bool:
        """Write atomically if anything changed; return whether the file was written.

        With `keep`, entries of `model` whose keys are not in it (stale prompts) are dropped;
        entries of other models are always kept.
        """
        if keep is not None:
            if model is None:
                raise ValueError("pruning a replay store needs the model whose entries are pruned")
            stale = [k for k, e in self._entries.items() if k not in keep and self.model_of(e) == model]
            for key in stale:
                del self._entries[key]
            self._changed = self._changed or bool(stale)
        if not self._changed and path.exists():
            return False
        entries = sorted(self._entries.values(), key=lambda e: (e["paper_id"], e["key"]))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + f".tmp-{os.getpid()}")
        with tmp.open("w", encoding="utf-8") as fh:
            for entry in entries:
                fh.write(json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n")
        tmp.replace(path)
        self._changed = False
        return True
