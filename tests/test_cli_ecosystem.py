"""Issue 15 item 4: the command line fits its ecosystem (version, `python -m`, short flags,
config files, `config show`, `models`, which backend runs)."""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pytest import MonkeyPatch
from typer.testing import CliRunner

from summarizer import package_version
from summarizer.cli import app
from summarizer.errors import ConfigError
from summarizer.settings import (
    DEFAULT_MODEL_NAME,
    Origin,
    Settings,
    load_settings,
    setting_origins,
    user_config_path,
)

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


# --------------------------------------------------------------------------------------
# Config files: ./summarizer.toml and the user's config.toml, read by the one Settings


@pytest.fixture
def config_files(tmp_path: Path, monkeypatch: MonkeyPatch) -> tuple[Path, Path]:
    """(project file, user file), neither written yet; the current directory is the project."""
    project_dir, xdg = tmp_path / "project", tmp_path / "xdg"
    (xdg / "summarizer").mkdir(parents=True)
    project_dir.mkdir()
    monkeypatch.chdir(project_dir)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    assert user_config_path() == xdg / "summarizer" / "config.toml"
    return project_dir / "summarizer.toml", xdg / "summarizer" / "config.toml"


def test_precedence_cli_env_project_user_default(config_files: tuple[Path, Path], monkeypatch: MonkeyPatch) -> None:
    project, user = config_files
    user.write_text('temperature = 0.1\ntop_p = 0.5\nmax_tokens = 700\nconcurrency = 3\nmodel = "from-user"\n')
    project.write_text("temperature = 0.2\ntop_p = 0.6\nmax_tokens = 800\n")
    monkeypatch.setenv("SUMMARIZER_TEMPERATURE", "0.3")
    monkeypatch.setenv("SUMMARIZER_TOP_P", "0.7")
    s = load_settings({"temperature": 0.4})
    assert (s.temperature, s.top_p, s.max_tokens, s.concurrency, s.model) == (0.4, 0.7, 800, 3, "from-user")
    assert s.seed == 0  # nobody set it
    origins = setting_origins({"temperature": 0.4}, {"temperature": "--temperature"})
    assert origins["temperature"] == Origin("cli", "--temperature")
    assert origins["top_p"] == Origin("env", "SUMMARIZER_TOP_P")
    assert origins["max_tokens"] == Origin("project", str(project))
    assert origins["concurrency"] == Origin("user", str(user))
    assert origins["seed"] == Origin("default")


def test_a_model_from_a_config_file_selects_the_server(config_files: tuple[Path, Path]) -> None:
    project, _ = config_files
    project.write_text('model = "gpt-4o-mini"\n')
    assert Settings().resolved_backend == "openai"


def test_a_bad_value_in_a_config_file_is_one_line_naming_file_and_key(config_files: tuple[Path, Path]) -> None:
    project, user = config_files
    user.write_text("max_reasks = 99\n")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert f"{user}: max_reasks=99" in result.output
    project.write_text('concurrency = "many"\n')
    with pytest.raises(ConfigError, match=rf"{re.escape(str(project))}: concurrency='many'"):
        load_settings()


def test_an_unknown_key_or_broken_toml_is_one_line_naming_the_file(config_files: tuple[Path, Path]) -> None:
    project, user = config_files
    user.write_text('modle = "x"\n')
    result = runner.invoke(app, ["summarize", "--title", "T", "--abstract", "A."])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert f"config file {user}: unknown key 'modle'" in result.output
    user.write_text("")
    project.write_text("model = \n")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert f"config file {project}: not valid TOML" in result.output


def test_config_show_says_where_each_value_came_from_and_hides_the_key(
    config_files: tuple[Path, Path], monkeypatch: MonkeyPatch
) -> None:
    project, user = config_files
    user.write_text('api_key = "sk-SENTINEL-user-file"\nconcurrency = 2\n')
    project.write_text('base_url = "http://127.0.0.1:9/v1"\nmax_tokens = 500\n')
    monkeypatch.setenv("OPENAI_API_KEY", "sk-SENTINEL-env")
    monkeypatch.setenv("SUMMARIZER_SEED", "7")
    result = runner.invoke(app, ["config", "show", "-m", "cli-model"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert result.output.startswith("backend: openai cli-model at http://127.0.0.1:9/v1\n")
    assert lines["model"].endswith("cli-model  [CLI --model]")
    assert lines["api_key"].endswith("set  [env OPENAI_API_KEY]")
    assert lines["seed"].endswith("7  [env SUMMARIZER_SEED]")
    assert lines["max_tokens"].endswith(f"500  [project file {project}]")
    assert lines["base_url"].endswith(f"http://127.0.0.1:9/v1  [project file {project}]")
    assert lines["concurrency"].endswith(f"2  [user file {user}]")
    assert lines["temperature"].endswith("0.0  [default]")
    assert "SENTINEL" not in result.output
    monkeypatch.delenv("OPENAI_API_KEY")
    user.write_text("")
    result = runner.invoke(app, ["config", "show"])
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert lines["api_key"].endswith("unset  [default]")
