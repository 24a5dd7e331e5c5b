"""Write requirements.lock: exact versions of everything `pip install -e ".[embedded,dev]"` brings.

pyproject.toml holds compatible ranges; this file pins what was installed and tested, and CI
installs with it as a constraints file (`python -m pip install -c requirements.lock ...`).
Run after a deliberate upgrade, in the environment the tests passed in:

    python .ci/lock.py > requirements.lock
"""

from __future__ import annotations

import importlib.metadata as md
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

EXTRAS = ("embedded", "dev")
#: The installer's own tools: pinning them would fight the machine's pip, not pin the project.
TOOLING = {"pip", "setuptools", "wheel"}


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def main() -> None:
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    roots = list(project["dependencies"]) + [r for e in EXTRAS for r in project["optional-dependencies"][e]]
    env = default_environment()
    pinned: dict[str, str] = {}

    def walk(requirements: list[str], extras: tuple[str, ...]) -> None:
        for text in requirements:
            req = Requirement(text)
            if req.marker is not None and not any(
                req.marker.evaluate({**env, "extra": extra}) for extra in ("", *extras)
            ):
                continue
            name = canonical(req.name)
            if name == canonical(project["name"]):
                # An extra that pulls others ("dev" brings "[parquet,eval]"): read them from
                # pyproject.toml, not from the installed metadata, which may predate them.
                walk([r for e in sorted(req.extras) for r in project["optional-dependencies"][e]], ())
                continue
            dist = md.distribution(req.name)
            first = name not in pinned
            pinned[name] = dist.version
            if first or req.extras:
                walk(dist.requires or [], tuple(req.extras))

    walk(roots, ())
    print("# Exact versions CI installs (constraints); written by `python .ci/lock.py > requirements.lock`.")
    for name in sorted(set(pinned) - TOOLING):
        print(f"{name}=={pinned[name]}")


if __name__ == "__main__":
    main()
