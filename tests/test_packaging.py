"""Issue 15 item 5: the wheel is the package. It carries every file the program reads at run
time (prompts, taxonomy, calibration, templates), and installed away from this checkout it
runs without reading anything from the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
SEED = ROOT / "examples" / "seeds" / "001_3f36dc078def8be6.txt"

# Runs the CLI, then lists every file it opened under the checkout (there should be none).
AUDITED_CLI = """
import sys
root = sys.argv.pop(1)
opened = set()


def hook(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith(root):
        opened.add(args[0])


sys.addaudithook(hook)
from summarizer.cli import app
try:
    app(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("opened in checkout:", sorted(opened))
sys.exit(code)
"""


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = out.glob("*.whl")
    return built


def test_wheel_is_named_for_pypi_and_installs_the_command(wheel: Path) -> None:
    assert wheel.name.startswith(f"paper_summarizer-{PROJECT['version']}-")
    with zipfile.ZipFile(wheel) as zf:
        info = f"paper_summarizer-{PROJECT['version']}.dist-info"
        metadata = zf.read(f"{info}/METADATA").decode()
        scripts = zf.read(f"{info}/entry_points.txt").decode()
    assert "Name: paper-summarizer\n" in metadata
    assert "summarizer = summarizer.cli:main" in scripts
    # Light base: the heavy packages are only in their extras.
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert any("pyarrow" in r and "extra == 'parquet'" in r for r in requires)
    assert not [r for r in requires if ("pyarrow" in r or "numpy" in r) and "extra ==" not in r]


def test_wheel_carries_every_data_file(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    # Every prompt, example, taxonomy and calibration file; every report/notes template.
    wanted = {f"summarizer/prompts/{p.relative_to(ROOT / 'prompts').as_posix()}" for p in _data_files(ROOT / "prompts")}
    package = ROOT / "summarizer"
    wanted |= {f"summarizer/{p.relative_to(package).as_posix()}" for p in _data_files(package)}
    assert {
        "summarizer/prompts/taxonomy.toml",
        "summarizer/prompts/calibration.json",
        "summarizer/prompts/examples.jsonl",
        "summarizer/templates/note.md.j2",
        "summarizer/templates/report.html.j2",
    } <= wanted
    assert sorted(wanted - names) == []
    # Nothing of the checkout's own: tests, evaluation data, examples, caches.
    assert not [n for n in names if n.split("/")[0] in {"tests", "evals", "examples", "cache", "benchmarks"}]


def test_installed_wheel_runs_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(SEED, work / "seed.txt")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUMMARIZER_", "OPENAI_", "PYTHON"))}
    env["PYTHONPATH"] = str(site)  # ahead of any editable install of the checkout
    env["HOME"] = str(tmp_path / "home")  # no user config file

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", AUDITED_CLI, str(ROOT), *args]
        return subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=120)

    version = cli("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.splitlines()[0] == f"summarizer {PROJECT['version']}"

    shown = cli("config", "show")
    assert shown.returncode == 0, shown.stderr
    (prompts,) = [line for line in shown.stdout.splitlines() if line.startswith("prompts_dir")]
    assert str(site / "summarizer" / "prompts") in prompts

    # A dry run renders every paper's prompt (prompts, examples, taxonomy) and prices it; it
    # starts no model.
    dry = cli("tag", "seed.txt", "-o", "out", "--dry-run", "--decisions", "scored")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "42 papers" in dry.stdout and "est. cost" in dry.stdout and "$0.0000" in dry.stdout
    assert not (work / "out").exists()

    for proc in (version, shown, dry):
        assert proc.stdout.splitlines()[-1] == "opened in checkout: []", proc.stdout
