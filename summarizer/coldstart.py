"""The embedded backend's cold start: its model file checked and its server started, both timed.

Paid once per run, before the first answer, and only when a paper needs the model (a run served
from the cache pays neither). Each step takes seconds with nothing else happening on screen, so
it is announced before it begins, and its time is told when it ends (and kept in the manifest).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .progress import ColdStart, ColdStep
from .settings import DEFAULT_MODEL_SIZE, Settings

if TYPE_CHECKING:
    from .llm import EmbeddedServer

Listener = Callable[[ColdStart], None]

_SIZE = f"{DEFAULT_MODEL_SIZE / 1e9:.1f} GB"
_BEGIN: dict[ColdStep, str] = {
    "assemble": f"assembling the model file from its parts ({_SIZE}, once)",
    "verify": f"verifying the model file ({_SIZE}, once)",
    "server": "starting the embedded server",
}
_DONE: dict[ColdStep, str] = {
    "assemble": "model file assembled in {:.1f} s",
    "verify": "model file verified in {:.1f} s",
    "server": "embedded server ready in {:.1f} s",
}


class ColdStartClock:
    """Announces and times the slow steps of an embedded backend's start."""

    def __init__(self) -> None:
        self.listener: Listener | None = None

    def _say(self, step: ColdStep, seconds: float | None) -> None:
        if self.listener is not None:
            message = _BEGIN[step] if seconds is None else _DONE[step].format(seconds)
            self.listener(ColdStart(step, seconds, message))

    def _begin(self, step: ColdStep) -> float:
        self._say(step, None)
        return time.monotonic()

    def _end(self, step: ColdStep, began: float) -> None:
        self._say(step, round(time.monotonic() - began, 2))

    def model_path(self, settings: Settings) -> Path:
        """The GGUF to serve; the default one checked (hashed only when it changed since last time)."""
        if settings.model_path is not None:
            return settings.model_path
        from .models import default_model_path

        began: list[tuple[ColdStep, float]] = []
        path = default_model_path(settings.model_cache_dir, before=lambda step: began.append((step, self._begin(step))))
        for step, at in began:
            self._end(step, at)
        return path

    async def start(self, server: EmbeddedServer) -> None:
        began = self._begin("server")
        server.launch()  # here, on the loop's thread: the child's life is tied to it
        await asyncio.to_thread(server.wait_ready)
        self._end("server", began)


def listen(backend: object, listener: Listener) -> dict[str, float]:
    """Have `backend` tell `listener` of its cold start, if it has one (a remote server has none).

    Returns the seconds of each step, filled in as the steps end: empty if nothing was paid (the
    server was already up, or no paper needed it).
    """
    seconds: dict[str, float] = {}
    clock = getattr(backend, "cold_start", None)
    if isinstance(clock, ColdStartClock):

        def record(event: ColdStart) -> None:
            if event.seconds is not None:
                # Summed: scored decisions start a second server for the questions.
                seconds[event.step] = round(seconds.get(event.step, 0.0) + event.seconds, 3)
            listener(event)

        clock.listener = record
    return seconds
