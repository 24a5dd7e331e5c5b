from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

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
    path = default_model_path()  # the user cache copy: assembled once, verified on every load
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
