"""What models can be used: the embedded default (its file's state, without starting a server)
and, when a server is configured, the models that server lists at `/v1/models`."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from platformdirs import user_cache_dir

from .errors import ModelFileError
from .llm import OPENAI_API_URL, BackendChoice, describe_backend, redact_url
from .models import DEFAULT_FILENAME, PART_COUNT, is_stamped, part_files, sha256_file
from .settings import DEFAULT_MODEL_NAME, DEFAULT_MODEL_SHA256, DEFAULT_MODEL_SIZE, Settings

# Listing models is one small request: a server that does not answer in this long is reported, not awaited.
LIST_TIMEOUT_S = 10.0

EmbeddedState = Literal["verified", "assembled", "parts installed", "missing", "bad", "file"]


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    state: EmbeddedState
    detail: str
    runtime: bool  # llama-cpp-python is installed


@dataclass(frozen=True)
class ServerModels:
    url: str
    models: list[str]
    error: str | None  # one line, when the server could not be asked


@dataclass(frozen=True)
class ModelList:
    backend: BackendChoice  # what a run with these settings would use
    embedded: EmbeddedModel
    server: ServerModels | None  # None: no server configured

    def lines(self) -> list[str]:
        e = self.embedded
        runtime = "" if e.runtime else "; llama-cpp-python is not installed (pip install -e '.[embedded]')"
        shown = [self.backend.line, f"embedded: {e.name}: {e.state}: {e.detail}{runtime}"]
        if self.server is None:
            shown.append("server: none configured (a base URL, or a key for api.openai.com, lists a server's models)")
        elif self.server.error is not None:
            shown.append(f"server: {self.server.error}")
        else:
            shown.append(f"server {self.server.url}: {len(self.server.models)} model(s)")
            shown.extend(f"  {name}" for name in self.server.models)
        return shown


def embedded_model(settings: Settings, *, verify: bool = False) -> EmbeddedModel:
    """The embedded model's file state, found without loading it. The sha256 of the assembled
    default (a gigabyte) is computed only with `verify`; a run checks it before loading, once
    (`models.verify_once`)."""
    runtime = importlib.util.find_spec("llama_cpp") is not None
    if settings.model_path is not None:
        path = settings.model_path
        name = settings.model or path.stem
        if not path.is_file():
            return EmbeddedModel(name, "missing", f"model file {path} does not exist", runtime)
        return EmbeddedModel(name, "file", f"{path} ({path.stat().st_size:,} bytes)", runtime)
    target = (settings.model_cache_dir or Path(user_cache_dir("summarizer"))) / DEFAULT_FILENAME
    if target.is_file():
        size = target.stat().st_size
        if size != DEFAULT_MODEL_SIZE:
            return EmbeddedModel(
                DEFAULT_MODEL_NAME, "bad", f"{target} has {size:,} bytes, expected {DEFAULT_MODEL_SIZE:,}", runtime
            )
        if not verify and is_stamped(target, size=DEFAULT_MODEL_SIZE, sha256=DEFAULT_MODEL_SHA256):
            return EmbeddedModel(DEFAULT_MODEL_NAME, "verified", f"{target} (sha256 checked, unchanged since)", runtime)
        if not verify:
            detail = f"{target} (size matches; sha256 is checked at the next load)"
            return EmbeddedModel(DEFAULT_MODEL_NAME, "assembled", detail, runtime)
        if sha256_file(target) != DEFAULT_MODEL_SHA256:
            return EmbeddedModel(DEFAULT_MODEL_NAME, "bad", f"{target} has the wrong sha256; delete it", runtime)
        return EmbeddedModel(DEFAULT_MODEL_NAME, "verified", f"{target} (size and sha256 match)", runtime)
    try:
        part_files()
    except ModelFileError as exc:
        return EmbeddedModel(DEFAULT_MODEL_NAME, "missing", exc.message, runtime)
    detail = f"its {PART_COUNT} part wheels are installed; assembled into {target.parent} on first use"
    return EmbeddedModel(DEFAULT_MODEL_NAME, "parts installed", detail, runtime)


def server_models(settings: Settings) -> ServerModels:
    """The configured server's `/v1/models`; a failure is one line in `error`, never raised."""
    import openai

    url = redact_url(settings.base_url) if settings.base_url else OPENAI_API_URL
    key = settings.api_key.get_secret_value() if settings.api_key else "not-needed"
    client = openai.OpenAI(api_key=key, base_url=settings.base_url, timeout=LIST_TIMEOUT_S, max_retries=0)
    try:
        listed = client.models.list()
        return ServerModels(url, sorted(m.id for m in listed.data), None)
    except openai.APIStatusError as exc:
        # The body may echo the request; the status alone says what went wrong.
        return ServerModels(url, [], f"the server at {url} answered HTTP {exc.status_code}")
    except openai.APIConnectionError as exc:
        kind = "timed out" if isinstance(exc, openai.APITimeoutError) else "refused or unreachable"
        return ServerModels(url, [], f"cannot reach the server at {url} ({kind})")
    except openai.OpenAIError as exc:
        return ServerModels(url, [], f"the server at {url} sent no model list ({type(exc).__name__})")
    finally:
        client.close()


def list_models(settings: Settings, *, verify: bool = False) -> ModelList:
    """What can be used with these settings. A server is asked only when one is configured (a
    base URL or a key): the embedded model needs nothing but its file."""
    settings.check()
    asked = settings.base_url is not None or settings.api_key is not None
    return ModelList(
        backend=describe_backend(settings),
        embedded=embedded_model(settings, verify=verify),
        server=server_models(settings) if asked else None,
    )
