"""The one LLM path: the `openai` client, patched by `instructor`, with tenacity retries.

Two layers of retrying, counted apart:
- transport retries (timeouts, connection errors, 429, 5xx), inside each request, with
  exponential backoff and jitter that honours `Retry-After`;
- validation re-asks, done by instructor: the validation error goes back to the model.

Backends differ only in where the server is and which instructor mode it accepts:
`OpenAIBackend` talks to any OpenAI-compatible URL; `EmbeddedBackend` first starts
llama-cpp-python's server on loopback with a local GGUF file, then does the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, create_model
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from .coldstart import ColdStartClock
from .errors import ConfigError, ExtractionFailed, LLMError, ServiceError, TransportError
from .schemas import Usage
from .settings import DEFAULT_MODEL_NAME, DEFAULT_MODEL_SHA256, InstructorMode, Settings

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)
# instructor logs each failed attempt at ERROR ("Total attempts: 1" when tenacity made six, the
# server's error body). With no handler configured Python printed those to stderr, past --quiet
# and into --log-format jsonl; the failure records say it right. An application that configures
# logging still receives them (they propagate to its handlers).
logging.getLogger("instructor").addHandler(logging.NullHandler())

OPENAI_DEFAULT_MODEL = "gpt-4o-mini"
OPENAI_API_URL = "https://api.openai.com/v1"

#: Connections refused (or not made) in a row, with no answer from the server in between, after
#: which the server counts as down and the run stops. Per backend, over all papers: at the
#: default retry schedule one paper alone reaches it in about 7 s, where its six attempts took 31 s.
CONNECT_FAILURES_TO_STOP = 4
#: HTTP statuses that no retry and no other paper can fix: the key, the access or the address is wrong.
_REFUSALS = {
    401: "rejected the API key (HTTP 401); check OPENAI_API_KEY or SUMMARIZER_API_KEY",
    403: "denied access (HTTP 403); check that the API key may use this model",
    404: "has no such model or path (HTTP 404); check --model and --base-url (it usually ends in /v1)",
}


@dataclass
class CallStats:
    """Counters for one logical extraction (all its attempts)."""

    requests: int = 0  # HTTP requests actually sent, transport retries included
    model_calls: int = 0  # calls that reached the model and returned; re-asks = model_calls - 1


@dataclass
class _Call:
    schema: dict[str, Any]
    system: str | None = None
    stats: CallStats = field(default_factory=CallStats)


# Per-task state: each asyncio task (one paper) sees its own call, so concurrent papers
# count their own retries and send their own schema through the shared patched client.
_CURRENT_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("summarizer_call", default=None)


#: One generated token and the server's top alternatives for it, as (text, log-probability).
TokenLogprobs = tuple[str, tuple[tuple[str, float], ...]]


@dataclass
class Completion:
    value: BaseModel
    usage: Usage
    stats: CallStats
    raw: str | None = None
    #: Per output token, when the request asked for log-probabilities and the server gave them.
    tokens: list[TokenLogprobs] | None = None


@dataclass
class Choice:
    """The answer to a one-token question.

    `top` holds the server's top alternatives for the first answer token; when the server
    returned no log-probabilities it is None and `picked` is the option a constrained
    generation chose instead.
    """

    top: tuple[tuple[str, float], ...] | None
    usage: Usage
    stats: CallStats
    picked: str | None = None


class Backend(Protocol):
    """What the extractor needs from a model backend."""

    @property
    def identity(self) -> dict[str, str]:
        """Everything about the backend that changes outputs (cache key material)."""
        ...

    @property
    def label(self) -> str: ...

    async def resolve(self) -> None:
        """Learn what the server says about itself that changes outputs (the model it serves when
        none was configured), so that `identity` is complete before any cache key is made."""
        ...

    @property
    def cheap_questions(self) -> bool:
        """Whether many short requests per paper cost little: a local server that keeps the
        paper's prefix in its KV cache (not a paid API, which bills every request's prompt)."""
        ...

    @property
    def max_concurrency(self) -> int | None:
        """Requests worth having in flight at once; None when the server decides."""
        ...

    async def complete(
        self,
        messages: list[dict[str, str]],
        response_model: type[BaseModel],
        *,
        max_reasks: int,
        sampling: dict[str, Any],
    ) -> Completion:
        """A structured answer; with `sampling["logprobs"]`, also the log-probabilities of its tokens."""
        ...

    async def choose(self, messages: list[dict[str, str]], options: tuple[str, ...]) -> Choice:
        """The top log-probabilities of the first answer token (or, failing those, a generated choice)."""
        ...

    async def aclose(self) -> None: ...


# --------------------------------------------------------------------------------------
# Transport retries


def _is_transient(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, json.JSONDecodeError)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500 or exc.status_code == 408
    return False


def _retry_after_s(exc: BaseException | None) -> float | None:
    import openai

    if not isinstance(exc, openai.APIStatusError):
        return None
    value = exc.response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class _WaitHonouringRetryAfter:
    """Exponential backoff with jitter, unless the server said how long to wait."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._backoff = wait_exponential_jitter(initial=initial, max=maximum, jitter=initial)
        self._maximum = maximum

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = _retry_after_s(exc)
        if retry_after is not None:
            return min(retry_after, self._maximum)
        return float(self._backoff(state))


def _failed_to_connect(exc: BaseException) -> bool:
    """Whether `exc` (an openai error) means no connection was made: refused, no route, no such host."""
    seen: BaseException | None = exc
    for _ in range(8):  # the transport's error sits a few links down the cause chain
        if seen is None:
            return False
        # By name: openai's transport is httpx or its fork httpx2, depending on the version.
        if type(seen).__name__ in ("ConnectError", "ConnectTimeout"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def redact_url(url: str) -> str:
    """Drop credentials, query and fragment from a URL before it is logged or hashed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


# --------------------------------------------------------------------------------------
# OpenAI-compatible servers


def _auto_mode(base_url: str | None) -> InstructorMode:
    host = urlsplit(base_url).hostname if base_url else "api.openai.com"
    if host == "api.openai.com":
        return "tools"
    # vLLM, Ollama, llama.cpp's own server and most hosted gateways accept json_schema.
    return "json_schema"


class OpenAIBackend:
    def __init__(
        self,
        settings: Settings,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        mode: InstructorMode | None = None,
        label: str = "openai",
    ) -> None:
        self._settings = settings
        self._base_url = base_url if base_url is not None else settings.base_url
        key = api_key if api_key is not None else (settings.api_key.get_secret_value() if settings.api_key else None)
        self._api_key = key or "not-needed"  # local servers ignore it; the client insists on one
        self._model = model or settings.model or (OPENAI_DEFAULT_MODEL if self._base_url is None else None)
        wanted = mode or settings.instructor_mode
        self._mode: InstructorMode = _auto_mode(self._base_url) if wanted == "auto" else wanted
        self._label = label
        self._client: openai.AsyncOpenAI | None = None
        self._create: Any = None
        self._logprobs: bool | None = None  # whether this server returns log-probabilities (None: not known yet)
        self._connect_failures = 0  # in a row, over all papers; any answer from the server resets it

    @property
    def mode(self) -> InstructorMode:
        return self._mode

    @property
    def max_concurrency(self) -> int | None:
        return None

    @property
    def cheap_questions(self) -> bool:
        return False

    @property
    def label(self) -> str:
        return f"{self._label}:{self._model or '?'}"

    @property
    def identity(self) -> dict[str, str]:
        return {
            "backend": self._label,
            "base_url": redact_url(self._base_url) if self._base_url else OPENAI_API_URL,
            "model": self._model or "",
            "mode": self._mode,
        }

    def _ensure_client(self) -> None:
        if self._client is not None:
            return
        import instructor
        import openai

        # The client's own retries are off: tenacity does them, so they can be counted and
        # so a Retry-After is honoured instead of the client's fixed schedule.
        self._client = openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self._base_url,
            timeout=self._settings.request_timeout_s,
            max_retries=0,
        )
        mode = {
            "llamacpp_json": instructor.Mode.JSON,
            "json": instructor.Mode.JSON,
            "json_schema": instructor.Mode.JSON_SCHEMA,
            "md_json": instructor.Mode.MD_JSON,
            "tools": instructor.Mode.TOOLS,
        }[self._mode]
        self._create = instructor.patch(create=self._send, mode=mode)

    async def resolve(self) -> None:
        await self.resolve_model()

    async def resolve_model(self) -> str:
        """Ask the server for its model when none was configured (llama.cpp, vLLM with one model)."""
        if self._model:
            return self._model
        self._ensure_client()
        assert self._client is not None
        try:
            models = await self._client.models.list()
        except Exception as exc:
            raise ConfigError(
                f"no model configured and the server at {redact_url(self._base_url or '')} did not list any: "
                f"{type(exc).__name__}; set SUMMARIZER_MODEL"
            ) from exc
        if not models.data:
            raise ConfigError("no model configured and the server lists none; set SUMMARIZER_MODEL")
        self._model = models.data[0].id
        return self._model

    async def _send(self, **kwargs: Any) -> Any:
        """One logical request, with transport retries; counted into the current call's stats."""
        call = _CURRENT_CALL.get()
        stats = call.stats if call is not None else None
        if self._mode == "llamacpp_json" and call is not None:
            # llama-cpp-python's server rejects type=json_schema but constrains decoding to a
            # schema given this way, so the output always parses.
            kwargs["response_format"] = {"type": "json_object", "schema": call.schema}
            if call.system is not None:
                # instructor's JSON mode appends the schema to the system prompt. The grammar
                # already enforces it, and the schema's per-paper enums would make the prompt
                # prefix differ per paper, defeating llama.cpp's KV-cache reuse.
                messages = [dict(m) for m in kwargs["messages"]]
                messages[0]["content"] = call.system
                kwargs["messages"] = messages
        return await self._post(kwargs, stats)

    async def _post(self, kwargs: dict[str, Any], stats: CallStats | None) -> Any:
        """One chat request with transport retries, counted into `stats`."""
        assert self._client is not None
        retrying = AsyncRetrying(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(self._settings.max_retries + 1),
            wait=_WaitHonouringRetryAfter(1.0, self._settings.retry_max_wait_s),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if stats is not None:
                        stats.requests += 1
                    response = await self._request(kwargs)
        except json.JSONDecodeError as exc:
            # A 200 whose body is not JSON (a proxy's error page, a cut connection) is the
            # transport's fault, not the model's: it must not be spent as a re-ask.
            requests = stats.requests if stats is not None else 1
            raise TransportError(
                f"the server answered with a body that is not JSON after {requests} request(s)", attempts=requests
            ) from exc
        if stats is not None:
            stats.model_calls += 1
        return response

    async def _request(self, kwargs: dict[str, Any]) -> Any:
        """One HTTP request; raises `ServiceError` for what stops the whole run (see `_REFUSALS`)."""
        import openai

        assert self._client is not None
        where = redact_url(self._base_url or "https://api.openai.com/v1")
        try:
            response = await self._client.chat.completions.create(**kwargs)
        except openai.APIStatusError as exc:
            self._connect_failures = 0
            if exc.status_code in _REFUSALS:
                # The server's own message is left out: a 401's may quote part of the key.
                raise ServiceError(
                    f"the server at {where} {_REFUSALS[exc.status_code]}", status=exc.status_code
                ) from None
            raise
        except openai.APIConnectionError as exc:
            if _failed_to_connect(exc):
                self._connect_failures += 1
                if self._connect_failures >= CONNECT_FAILURES_TO_STOP:
                    raise ServiceError(
                        f"cannot reach the server at {where}: {self._connect_failures} connection attempts in a "
                        "row failed; check --base-url and that the server is running"
                    ) from None
            raise
        self._connect_failures = 0
        return response

    async def complete(
        self,
        messages: list[dict[str, str]],
        response_model: type[BaseModel],
        *,
        max_reasks: int,
        sampling: dict[str, Any],
    ) -> Completion:
        from instructor.core.exceptions import IncompleteOutputException, InstructorRetryException

        self._ensure_client()
        model = await self.resolve_model()
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
        call = _Call(schema=_schema_of(response_model), system=system)
        token = _CURRENT_CALL.set(call)
        deadline = self._settings.resolved_paper_deadline_s
        try:
            # The deadline bounds every retry, re-ask and wait of this answer together.
            async with asyncio.timeout(deadline):
                value = await self._create(
                    response_model=response_model,
                    messages=messages,
                    model=model,
                    max_retries=max_reasks,
                    **sampling,
                )
        except TimeoutError as exc:
            raise TransportError(
                f"no valid answer within the per-paper deadline of {deadline:g}s ({call.stats.requests} request(s))",
                attempts=call.stats.requests,
                reasks=max(call.stats.model_calls - 1, 0),
            ) from exc
        except InstructorRetryException as exc:
            if isinstance(exc.__cause__, ServiceError):  # not the paper's fault: the caller stops the run
                raise exc.__cause__ from None
            raise _as_llm_error(exc, call.stats) from exc
        except IncompleteOutputException as exc:
            raise ExtractionFailed(
                f"the model's answer was cut off at max_tokens={sampling.get('max_tokens')}",
                attempts=call.stats.requests,
                reasks=max(call.stats.model_calls - 1, 0),
                last_completion=_text_of(exc.last_completion),
                usage=_usage_of(exc.last_completion).model_dump(),
            ) from exc
        except TransportError:
            raise
        except Exception as exc:
            if _is_status(exc):
                raise _transport_error(exc, call.stats) from exc
            raise
        finally:
            _CURRENT_CALL.reset(token)
        raw = getattr(value, "_raw_response", None)
        total = getattr(value, "_total_usage", None)
        usage = _usage_of_total(total) if total is not None else _usage_of(raw)
        tokens = _tokens_of(raw) if sampling.get("logprobs") else None
        return Completion(value=value, usage=usage, stats=call.stats, raw=_text_of(raw), tokens=tokens)

    async def choose(self, messages: list[dict[str, str]], options: tuple[str, ...]) -> Choice:
        self._ensure_client()
        model = await self.resolve_model()
        stats = CallStats()
        if self._logprobs is not False:
            kwargs: dict[str, Any] = {
                "model": model, "messages": messages, "max_tokens": 1, "temperature": 0.0,
                "logprobs": True, "top_logprobs": TOP_LOGPROBS,
            }  # fmt: skip
            try:
                response = await self._post(kwargs, stats)
            except TransportError:
                raise
            except Exception as exc:
                if not _is_status(exc):
                    raise
                if not _refuses_logprobs(exc):
                    raise _transport_error(exc, stats) from exc
                self._logprobs = False
            else:
                top = _first_top(response)
                if top is not None:
                    self._logprobs = True
                    return Choice(top=top, usage=_usage_of(response), stats=stats)
                self._logprobs = False  # the server ignores the parameter: ask for a generated choice from now on
        # No log-probabilities from this server: a constrained generated choice, without confidence.
        completion = await self.complete(
            messages, choice_model(options), max_reasks=1, sampling={"temperature": 0.0, "max_tokens": 64}
        )
        stats.requests += completion.stats.requests
        stats.model_calls += completion.stats.model_calls
        picked = str(completion.value.__dict__["answer"])
        return Choice(top=None, usage=completion.usage, stats=stats, picked=picked)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


#: Alternatives asked for per answer token: OpenAI's maximum, and enough for every option of
#: the default taxonomy's largest question (nine categories) with room for spelling variants.
TOP_LOGPROBS = 20


@functools.lru_cache(maxsize=256)
def choice_model(options: tuple[str, ...]) -> type[BaseModel]:
    """The response model of a generated choice among `options` (servers without log-probabilities)."""
    return create_model("Choice", answer=(Literal[options], ...))


def _refuses_logprobs(exc: BaseException) -> bool:
    import openai

    return isinstance(exc, openai.BadRequestError) and "logprob" in str(exc).casefold()


def _first_top(response: Any) -> tuple[tuple[str, float], ...] | None:
    tokens = _tokens_of(response)
    return tokens[0][1] if tokens else None


def _tokens_of(response: Any) -> list[TokenLogprobs] | None:
    try:
        content = response.choices[0].logprobs.content
    except (AttributeError, IndexError, TypeError):
        return None
    if not content:
        return None
    tokens: list[TokenLogprobs] = []
    for item in content:
        top = tuple((str(a.token), float(a.logprob)) for a in (item.top_logprobs or ()))
        tokens.append((str(item.token), top or ((str(item.token), float(item.logprob)),)))
    return tokens


@functools.lru_cache(maxsize=1024)
def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    # Schema generation costs milliseconds; answer models are cached per paper shape, so the
    # same class comes back for re-asks and for papers with the same names and length.
    return model.model_json_schema()


def _is_status(exc: BaseException) -> bool:
    import openai

    return isinstance(exc, (openai.APIStatusError, openai.APIConnectionError))


def _usage_of(completion: Any) -> Usage:
    return _usage_of_total(getattr(completion, "usage", None))


def _usage_of_total(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    return Usage(
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
    )


def _text_of(completion: Any) -> str | None:
    try:
        message = completion.choices[0].message
    except (AttributeError, IndexError, TypeError):
        return None
    if message.content:
        return str(message.content)[:4000]
    calls = getattr(message, "tool_calls", None)
    if calls:
        return str(calls[0].function.arguments)[:4000]
    return None


def _transport_error(exc: BaseException, stats: CallStats) -> TransportError:
    import openai

    if isinstance(exc, openai.APIStatusError):
        what = f"HTTP {exc.status_code}"
    elif isinstance(exc, openai.APITimeoutError):
        what = "request timed out"
    else:
        what = f"connection failed ({type(exc).__name__})"
    return TransportError(
        f"{what} after {stats.requests} request(s)",
        attempts=stats.requests,
        reasks=max(stats.model_calls - 1, 0),
    )


def _as_llm_error(exc: Any, stats: CallStats) -> LLMError:
    cause = exc.__cause__
    usage = _usage_of_total(getattr(exc, "total_usage", None))
    if isinstance(cause, TransportError):
        cause.usage = usage.model_dump()
        cause.reasks = max(stats.model_calls - 1, 0)
        return cause
    if cause is not None and _is_status(cause):
        error = _transport_error(cause, stats)
        error.usage = usage.model_dump()
        return error
    reason = str(cause or exc).strip().splitlines()
    return ExtractionFailed(
        f"no valid answer after {stats.model_calls} attempt(s): " + " ".join(reason)[:1500],
        attempts=stats.requests,
        reasks=max(stats.model_calls - 1, 0),
        last_completion=_text_of(getattr(exc, "last_completion", None)),
        usage=usage.model_dump(),
    )


# --------------------------------------------------------------------------------------
# The embedded default: llama-cpp-python's server on loopback


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Runs in the child before it becomes the real command. PR_SET_PDEATHSIG: the kernel sends
# SIGTERM when the parent dies, however it dies (kill -9, an OOM kill, a killed test run);
# without it an interrupted run left a model server holding two CPUs and gigabytes of memory,
# and later runs on the machine crawled. The setting survives exec. Done in a small Python
# shim rather than a preexec_fn, which is unsafe in a process with threads.
_TIE_TO_PARENT = """\
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(1, signal.SIGTERM)
if os.getppid() != int(sys.argv[1]):  # the parent died before prctl: nobody is left to serve
    sys.exit(1)
os.execvp(sys.argv[2], sys.argv[2:])
"""


def popen_tied_to_parent(cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """`subprocess.Popen` for a helper process that must not outlive this one (on Linux).

    Strictly, the tie is to the calling thread: the signal comes when the thread that started
    the child exits. So call it from the event loop's thread, not from a short-lived worker.
    """
    if sys.platform == "linux":
        cmd = [sys.executable, "-c", _TIE_TO_PARENT, str(os.getpid()), *cmd]
    return subprocess.Popen(cmd, **kwargs)


@dataclass
class EmbeddedServer:
    """llama-cpp-python's OpenAI-compatible server, started on loopback and stopped after.

    One process, one model, one generation at a time: llama.cpp keeps the KV cache of the
    previous request and re-uses its longest common token prefix, so the shared system
    prompt and taxonomy are processed once per server, not once per paper.
    """

    model_path: Path
    n_ctx: int = 4096
    n_threads: int | None = None
    startup_timeout_s: float = 300.0
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _log: Any = field(default=None, init=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process (fast). Call from a thread that lives as long as the server: see
        `popen_tied_to_parent`."""
        try:
            import llama_cpp.server  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "the embedded backend needs llama-cpp-python: pip install -e '.[embedded]' "
                "(or use a server: OPENAI_BASE_URL, or --backend openai with OPENAI_API_KEY)"
            ) from exc
        self.port = self.port or _free_port()
        threads = self.n_threads or max(os.cpu_count() or 1, 1)
        cmd = [
            sys.executable, "-m", "summarizer.llamacpp_server",
            "--model", str(self.model_path),
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(threads), "--n_threads_batch", str(threads),
            "--model_alias", self.model_path.stem,
        ]  # fmt: skip
        self._log = tempfile.TemporaryFile()
        self.process = popen_tied_to_parent(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_ready(self) -> None:
        """Block until the server accepts connections (loading the model takes seconds)."""
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError(f"the embedded model server exited during start-up:\n{self._tail()}")
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            time.sleep(0.2)
        self.stop()
        raise ConfigError(f"the embedded model server did not start within {self.startup_timeout_s:.0f}s")

    def _tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return str(self._log.read()[-2000:].decode("utf-8", "replace"))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedBackend:
    """The default when nothing else is configured: a local GGUF model, no key, no network.

    Generated answers and scored questions go to two server processes. A llama.cpp context keeps
    the KV cache of its last request only, and the two kinds of request start with different
    fixed prefixes (the instructions and worked examples, some 4,500 tokens; the questions'
    instructions, some 1,000): on one server each paper's questions would evict the answer's
    prefix and the next answer the questions', re-processing both every paper at ~150 tokens a
    second. The model file is memory-mapped, so two processes hold it in memory once; only the
    one whose request is running uses the cores. A run that asks no questions starts one.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._servers: dict[str, EmbeddedServer] = {}
        self._inners: dict[str, OpenAIBackend] = {}
        self._model_path: Path | None = None
        self._lock = asyncio.Lock()
        self.cold_start = ColdStartClock()  # told of by `coldstart.listen`
        if settings.model_path is not None:
            self._model_id = f"gguf:{settings.model_path.name}:{_file_fingerprint(settings.model_path)}"
            self._name = settings.model or settings.model_path.stem
        else:
            self._model_id = f"gguf:sha256:{DEFAULT_MODEL_SHA256}"
            self._name = settings.model or DEFAULT_MODEL_NAME

    @property
    def label(self) -> str:
        return f"embedded:{self._name}"

    @property
    def cheap_questions(self) -> bool:
        return True

    @property
    def max_concurrency(self) -> int | None:
        # One llama.cpp context generates one answer at a time; queueing more requests only
        # inflates their measured latency (and risks client timeouts).
        return 1

    @property
    def identity(self) -> dict[str, str]:
        return {"backend": "embedded", "model": self._model_id, "mode": "llamacpp_json"}

    async def resolve(self) -> None:
        """Nothing to ask: the model file's hash is the identity, known without starting the server."""

    @property
    def _server(self) -> EmbeddedServer | None:
        """The server of generated answers, once started."""
        return self._servers.get("answers")

    async def _ensure_started(self, role: str = "answers") -> OpenAIBackend:
        async with self._lock:
            inner = self._inners.get(role)
            if inner is None:
                if self._model_path is None:
                    self._model_path = self.cold_start.model_path(self._settings)
                path = self._model_path
                server = EmbeddedServer(path, n_ctx=self._settings.n_ctx, n_threads=self._settings.n_threads)
                await self.cold_start.start(server)
                self._servers[role] = server
                inner = self._inners[role] = OpenAIBackend(
                    self._settings,
                    base_url=server.base_url,
                    api_key="embedded",
                    model=path.stem,
                    mode="llamacpp_json",
                    label="embedded",
                )
            return inner

    async def complete(
        self,
        messages: list[dict[str, str]],
        response_model: type[BaseModel],
        *,
        max_reasks: int,
        sampling: dict[str, Any],
    ) -> Completion:
        inner = await self._ensure_started()
        return await inner.complete(messages, response_model, max_reasks=max_reasks, sampling=sampling)

    async def choose(self, messages: list[dict[str, str]], options: tuple[str, ...]) -> Choice:
        inner = await self._ensure_started("questions")
        return await inner.choose(messages, options)

    async def aclose(self) -> None:
        inners, self._inners = self._inners, {}
        servers, self._servers = self._servers, {}
        for inner in inners.values():
            await inner.aclose()
        for server in servers.values():
            await asyncio.to_thread(server.stop)


def _file_fingerprint(path: Path) -> str:
    """Identity of a user-supplied GGUF without hashing a gigabyte on every start."""
    stat = path.stat()
    return f"{stat.st_size}:{int(stat.st_mtime)}"


@dataclass(frozen=True)
class BackendChoice:
    """Which backend a run uses and where its papers go, known before anything starts."""

    backend: str
    model: str
    at: str | None  # the server's URL, without credentials; None: this machine only

    @property
    def line(self) -> str:
        if self.at is None:
            return f"backend: {self.backend} {self.model} (no key, no network)"
        return f"backend: {self.backend} {self.model} at {self.at}"


def describe_backend(settings: Settings, backend: Backend | None = None) -> BackendChoice:
    """What `make_backend(settings)` would run (or what `backend` is); starts and asks nothing."""
    if backend is not None:
        identity = backend.identity
        return BackendChoice(identity.get("backend", "?"), backend.label.partition(":")[2], identity.get("base_url"))
    if settings.resolved_backend == "embedded":
        path = settings.model_path
        return BackendChoice(
            "embedded", settings.model or (path.stem if path is not None else DEFAULT_MODEL_NAME), None
        )
    model = settings.model or (OPENAI_DEFAULT_MODEL if settings.base_url is None else "(the server's model)")
    return BackendChoice("openai", model, redact_url(settings.base_url) if settings.base_url else OPENAI_API_URL)


def make_backend(settings: Settings) -> Backend:
    settings.check()
    if settings.resolved_backend == "embedded":
        return EmbeddedBackend(settings)
    return OpenAIBackend(settings)
