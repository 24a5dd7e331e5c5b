"""Issue 15 item 4: the command line fits its ecosystem (version, `python -m`, short flags,
config files, `config show`, `models`, which backend runs)."""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pytest import MonkeyPatch
from typer.testing import CliRunner

from summarizer import package_version
from summarizer.cli import app
from summarizer.errors import ConfigError
from summarizer.settings import DEFAULT_MODEL_NAME, Settings

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUMMARIZER_", "OPENAI_"))}
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


def test_version_is_the_installed_distributions() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"summarizer {md.version('summarizer')}"
    assert package_version() == md.version("summarizer")


def test_python_dash_m_runs_the_same_cli(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "summarizer", "--version"], cwd=tmp_path, env=_env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"summarizer {package_version()}"
    proc = subprocess.run([sys.executable, "-m", "summarizer", "--help"], env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0 and "tag" in proc.stdout and "summarize" in proc.stdout


def test_dash_m_is_the_model_option() -> None:
    # A model with no server and no key: the settings refuse it, naming what is missing; so `-m`
    # reached the model setting (an unknown option would be a usage error, exit 2).
    result = runner.invoke(app, ["summarize", "--title", "T", "--abstract", "A b c.", "-m", "gpt-4o-mini"])
    assert result.exit_code == 1
    assert "needs an API key" in result.output


# --------------------------------------------------------------------------------------
# Which backend `auto` picks: a key alone keeps the embedded default


def test_a_key_alone_keeps_the_embedded_default(monkeypatch: MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-ambient")
    assert Settings().api_key is not None
    assert Settings().resolved_backend == "embedded"
    assert Settings(model=DEFAULT_MODEL_NAME).resolved_backend == "embedded"


def test_a_base_url_or_a_remote_model_or_backend_openai_selects_the_server(monkeypatch: MonkeyPatch) -> None:
    assert Settings(base_url="http://127.0.0.1:9/v1").resolved_backend == "openai"
    assert Settings(model="gpt-4o-mini").resolved_backend == "openai"
    assert Settings(backend="openai").resolved_backend == "openai"
    monkeypatch.setenv("SUMMARIZER_MODEL", "gpt-4o-mini")
    assert Settings().resolved_backend == "openai"


def test_a_model_name_with_a_model_file_is_a_label_for_the_embedded_backend(tmp_path: Path) -> None:
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF")
    assert Settings(model="my-label", model_path=gguf).resolved_backend == "embedded"
    assert Settings(backend="embedded", model="gpt-4o-mini").resolved_backend == "embedded"


def test_a_remote_model_without_key_or_url_is_one_line_naming_both() -> None:
    with pytest.raises(ConfigError, match=r"needs an API key .* or a base URL"):
        Settings(model="gpt-4o-mini").check()
