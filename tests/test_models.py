from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from summarizer import models
from summarizer.errors import ModelFileError
from summarizer.models import PART_COUNT, default_model_path, part_files, tiny_model_path, verify
from summarizer.settings import DEFAULT_MODEL_SIZE


def test_verify_rejects_wrong_size_and_wrong_hash(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + b"\0" * 60)
    good = hashlib.sha256(f.read_bytes()).hexdigest()
    verify(f, size=64, sha256=good)
    with pytest.raises(ModelFileError, match="64 bytes; expected 65"):
        verify(f, size=65, sha256=good)
    with pytest.raises(ModelFileError, match="sha256"):
        verify(f, size=64, sha256="0" * 64)


def test_parts_are_found_through_package_metadata() -> None:
    parts = part_files()
    assert len(parts) == PART_COUNT
    assert [p.name for p in parts] == [f"part{n:02d}.bin" for n in range(1, PART_COUNT + 1)]
    assert sum(p.stat().st_size for p in parts) == DEFAULT_MODEL_SIZE


def test_default_model_is_assembled_and_verified(tmp_path: Path) -> None:
    path = default_model_path()  # the user cache copy: assembled once, hashed again only when it changed
    assert path.stat().st_size == DEFAULT_MODEL_SIZE
    with path.open("rb") as fh:
        assert fh.read(4) == b"GGUF"


def test_a_corrupted_model_file_stops_with_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    target.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="expected 1,117,320,768"):
        default_model_path(tmp_path)


def test_tiny_model_ships_in_its_wheel() -> None:
    path = tiny_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    with path.open("rb") as fh:
        assert fh.read(4) == b"GGUF"


# --------------------------------------------------------------------------------------
# Verified once: a stamp beside the model spares later loads the 1.1 GB hash


@pytest.fixture
def fake_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[Path]]:
    """A small file in the default model's place, made official; every sha256_file call is counted."""
    target = tmp_path / models.DEFAULT_FILENAME
    target.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    os.utime(target, (1_600_000_000, 1_600_000_000))  # old: a rewrite now cannot land on the same mtime
    monkeypatch.setattr(models, "DEFAULT_MODEL_SIZE", target.stat().st_size)
    monkeypatch.setattr(models, "DEFAULT_MODEL_SHA256", hashlib.sha256(target.read_bytes()).hexdigest())
    hashed: list[Path] = []
    real = models.sha256_file

    def counting(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(models, "sha256_file", counting)
    return target, hashed


def test_the_first_load_hashes_and_later_loads_do_not(fake_default: tuple[Path, list[Path]]) -> None:
    target, hashed = fake_default
    steps: list[str] = []
    assert default_model_path(target.parent, before=steps.append) == target
    assert hashed == [target] and steps == ["verify"]
    stamp = json.loads(models.stamp_path(target).read_text())
    assert stamp["sha256"] == models.DEFAULT_MODEL_SHA256 and stamp["size"] == target.stat().st_size
    assert stamp["mtime_ns"] == target.stat().st_mtime_ns and stamp["inode"] == target.stat().st_ino
    assert default_model_path(target.parent, before=steps.append) == target
    assert default_model_path(target.parent) == target
    assert hashed == [target] and steps == ["verify"]  # nothing hashed, nothing announced


def test_a_touched_or_rewritten_model_is_hashed_again(fake_default: tuple[Path, list[Path]]) -> None:
    target, hashed = fake_default
    default_model_path(target.parent)
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    default_model_path(target.parent)
    assert len(hashed) == 2
    default_model_path(target.parent)
    assert len(hashed) == 2  # the new mtime was stamped
    replacement = target.with_name("new")
    replacement.write_bytes(target.read_bytes())
    os.utime(replacement, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns))
    os.replace(replacement, target)  # same bytes, same mtime, another inode
    default_model_path(target.parent)
    assert len(hashed) == 3


def test_a_file_changed_in_place_fails_verification_again(fake_default: tuple[Path, list[Path]]) -> None:
    target, hashed = fake_default
    default_model_path(target.parent)
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF  # same size
    target.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"has sha256 [0-9a-f]{64}; expected .* Delete it and run again"):
        default_model_path(target.parent)
    with pytest.raises(ModelFileError, match="Delete it and run again"):  # and again: a failure is never stamped
        default_model_path(target.parent)
    assert len(hashed) == 3


@pytest.mark.parametrize(
    "stamp",
    ["", "{not json", "[]", '{"sha256": "x"}', None],
    ids=["empty", "corrupt", "not-an-object", "partial", "missing"],
)
def test_a_bad_or_missing_stamp_means_a_rehash(fake_default: tuple[Path, list[Path]], stamp: str | None) -> None:
    target, hashed = fake_default
    default_model_path(target.parent)
    if stamp is None:
        models.stamp_path(target).unlink()
    else:
        models.stamp_path(target).write_text(stamp)
    default_model_path(target.parent)
    assert len(hashed) == 2
    default_model_path(target.parent)
    assert len(hashed) == 2  # the rehash wrote a good stamp


def test_a_stamp_for_another_official_hash_is_not_trusted(
    fake_default: tuple[Path, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    target, hashed = fake_default
    default_model_path(target.parent)
    monkeypatch.setattr(models, "DEFAULT_MODEL_SHA256", "0" * 64)  # a new release of the model
    with pytest.raises(ModelFileError, match="expected 0000"):
        default_model_path(target.parent)
    assert len(hashed) == 2


def test_a_wrong_size_is_refused_before_any_hash(fake_default: tuple[Path, list[Path]]) -> None:
    target, hashed = fake_default
    default_model_path(target.parent)
    with target.open("ab") as fh:
        fh.write(b"x")
    steps: list[str] = []
    with pytest.raises(ModelFileError, match="bytes; expected"):
        default_model_path(target.parent, before=steps.append)
    assert hashed == [target] and steps == []


def test_an_unwritable_stamp_costs_only_a_rehash(
    fake_default: tuple[Path, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    target, hashed = fake_default

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(models.os, "replace", refuse)
    assert default_model_path(target.parent) == target
    assert default_model_path(target.parent) == target
    assert len(hashed) == 2 and not models.stamp_path(target).exists()
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no partial stamp left behind


def test_the_assembled_model_is_stamped_without_a_second_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = []
    for n in (1, 2, 3):
        part = tmp_path / "parts" / f"part{n:02d}.bin"
        part.parent.mkdir(exist_ok=True)
        part.write_bytes(bytes([n]) * 1000)
        parts.append(part)
    whole = b"".join(p.read_bytes() for p in parts)
    monkeypatch.setattr(models, "part_files", lambda: parts)
    monkeypatch.setattr(models, "DEFAULT_MODEL_SIZE", len(whole))
    monkeypatch.setattr(models, "DEFAULT_MODEL_SHA256", hashlib.sha256(whole).hexdigest())
    hashed: list[Path] = []
    monkeypatch.setattr(models, "sha256_file", lambda p: hashed.append(p) or "")
    steps: list[str] = []
    cache = tmp_path / "cache"
    target = default_model_path(cache, before=steps.append)
    assert target.read_bytes() == whole and steps == ["assemble"]
    assert default_model_path(cache, before=steps.append) == target
    assert hashed == [] and steps == ["assemble"]
