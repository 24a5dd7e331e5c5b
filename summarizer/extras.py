"""Optional parts of the install, and the one line that names the extra to install.

The base install tags and summarises; Parquet output and the evaluation tools pull large
binary wheels (pyarrow, numpy) that most users never need, so they are extras. A command
that needs one checks for it first and, when it is missing, fails with a `MissingExtra`
that the CLI prints as one line, instead of an ImportError traceback from deep inside.
"""

from __future__ import annotations

import importlib

from .errors import MissingExtra

#: Extra name -> the modules it provides that the package imports (pyproject.toml's extras).
EXTRAS: dict[str, tuple[str, ...]] = {
    "parquet": ("pyarrow",),
    "eval": ("numpy", "rapidfuzz"),
}


def missing_modules(extra: str) -> list[str]:
    missing = []
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError:  # not installed, or installed broken: either way not usable
            missing.append(module)
    return missing


def has_extra(extra: str) -> bool:
    return not missing_modules(extra)


def install_hint(extra: str) -> str:
    from . import DISTRIBUTION

    return f"pip install '{DISTRIBUTION}[{extra}]'"


def require_extra(extra: str, what: str) -> None:
    """Raise MissingExtra naming `what` needs and the command that installs it."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtra(
            f"{what} needs the '{extra}' extra ({', '.join(missing)} not installed): {install_hint(extra)}",
            extra=extra,
        )
