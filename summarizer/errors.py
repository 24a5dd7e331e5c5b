"""One root exception; every subclass carries the context a user needs to act on it.

`str(error)` is always the user-facing message. Secrets are never part of any message:
settings hold keys as `SecretStr`, and nothing here formats a settings object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal


class SummarizerError(Exception):
    """Root of every error this package raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(SummarizerError):
    """Settings that cannot work together (an unknown backend, a missing model file)."""


class InputError(SummarizerError):
    """Bad input: names the file and, where it has one, the line."""

    def __init__(self, message: str, *, path: Path | str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")
        self.path = Path(path) if path is not None else None
        self.line = line
        self.reason = message


class StaleReplayError(InputError):
    """The replay store lacks outcomes for the current configuration and a live run was not asked for."""


class InputWarning(InputError):
    """An input problem the reader repaired; the data was kept (its message says how)."""


class ModelFileError(SummarizerError):
    """The embedded model could not be found, assembled or verified."""


class PromptError(SummarizerError):
    """A prompt template is missing, malformed, or rendered without a variable it needs."""


class LLMError(SummarizerError):
    """A model call failed for good.

    Carries what the caller needs to report or account for it: how many transport
    attempts and validation re-asks were spent, the last raw completion (if any) and
    the token usage that was paid for anyway.
    """

    def __init__(
        self,
        message: str,
        *,
        attempts: int = 0,
        reasks: int = 0,
        last_completion: str | None = None,
        usage: dict[str, int] | None = None,
    ) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.reasks = reasks
        self.last_completion = last_completion
        self.usage = usage or {}


class TransportError(LLMError):
    """The server could not be reached or kept failing (timeouts, 429, 5xx) past the retry budget."""


class ExtractionFailed(LLMError):
    """The model kept producing output that fails validation after the last re-ask."""


class ServiceError(SummarizerError):
    """The model server refuses this run or cannot be reached: every paper would fail alike.

    A bad key (HTTP 401), no access (403), no such model or path (404), or connections
    refused over and over. A batch stops at once on it rather than failing paper by paper;
    `status` is the HTTP status, None when no server answered.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class BudgetExceeded(SummarizerError):
    """A run reached its `--max-cost` or `--max-tokens` budget and stopped cleanly."""

    def __init__(self, message: str, *, spent: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.spent = spent or {}


CacheProblem = Literal["corrupt", "locked", "unusable"]


class CacheError(SummarizerError):
    """The cache directory is unusable: `problem` says how, `path` is the file or folder at fault.

    The message says what to do about it; the cache only ever holds copies of valid records,
    so deleting it or running with --no-cache loses nothing but the time to redo them.
    """

    def __init__(self, message: str, *, path: Path | str | None = None, problem: CacheProblem = "unusable") -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None
        self.problem: CacheProblem = problem


class OutputError(SummarizerError):
    """An output directory or file cannot be written (read-only, full disk); `path` names it."""

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None


class MissingExtra(ConfigError):
    """A command needs an optional part of the install (`pip install 'paper-summarizer[EXTRA]'`)."""

    def __init__(self, message: str, *, extra: str) -> None:
        super().__init__(message)
        self.extra = extra
