"""A scripted, fault-injecting OpenAI-compatible HTTP server for tests and benchmarks.

Stdlib only: a `ThreadingHTTPServer` on 127.0.0.1 (port 0) in a daemon thread, so the
real `openai` client, instructor and tenacity run against it exactly as against a real
server. Each chat request is answered by, in order of precedence:

1. the next action of the explicit `script` (consumed in order), e.g.
   ``("status", 429, {"Retry-After": "0.1"})``, ``("status", 503)``, ``("reset",)``,
   ``("hang", 3.0)``, ``("slow", 0.5)``, ``("content", "raw text")``, ``("answer", {...})``,
   ``("ok",)``, ``("truncated",)``, ``("bad_schema",)``, ``("bad_quote",)``, ``("empty",)``,
   ``("length",)`` (cut-off answer with ``finish_reason="length"``), ``("cut_body",)``
   (an HTTP body shorter than its Content-Length) or ``("raw", 200, "<html>...")`` (any body);
2. otherwise a fault drawn from `Faults` (seeded, so a run is reproducible);
3. otherwise `responder(request_json)` (default: `fakes.valid_answer` of the paper's messages).

Every chat request is recorded (`hits`, `requests`) with its outcome (`counts`).
`ServerProcess` runs one in a child process, for clients busy enough to starve it of the GIL.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import socket
import struct
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import KW_ONLY, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from .fakes import valid_answer

Responder = Callable[[dict[str, Any]], dict[str, Any]]
Action = tuple[Any, ...]

# The keys of `ScriptedServer.counts`.
OUTCOMES = tuple(
    "ok answer content raw 429 5xx 4xx reset hang slow truncated bad_schema bad_quote empty length cut_body".split()
)

MISSING_NAME = "Zyxwv-Unfound-Net"  # a method name no abstract contains
MISSING_DATASET = "Qwerty-Phantom-Bench"


@dataclass
class Faults:
    """Per-request fault probabilities (their sum must not exceed 1), drawn from `seed`."""

    rate_429: float = 0.0
    retry_after_s: float | None = 0.05  # None: a 429 without a Retry-After header
    rate_5xx: float = 0.0  # 500/502/503 chosen at random
    rate_reset: float = 0.0  # close the socket without a response (TCP reset)
    rate_hang: float = 0.0
    hang_s: float = 5.0  # sleep past the client's timeout, then close without a response
    rate_truncated: float = 0.0  # 200 whose message content is JSON cut short
    rate_bad_schema: float = 0.0  # valid JSON that breaks the schema
    rate_bad_quote: float = 0.0  # a method/dataset name that is not in the abstract
    rate_empty: float = 0.0  # 200 with empty content
    rate_slow: float = 0.0
    slow_s: float = 1.0  # slow but successful
    seed: int = 0

    def __post_init__(self) -> None:
        rates = [rate for _, rate in self._table()]
        if any(not 0.0 <= rate <= 1.0 for rate in rates) or sum(rates) > 1.0 + 1e-9:
            raise ValueError(f"fault rates must lie in [0, 1] and sum to at most 1, got {rates}")

    @classmethod
    def spread(cls, total: float, *, seed: int = 0, **options: Any) -> Faults:
        """`total` (e.g. 0.3 for 30 % of requests) split evenly over every fault kind, slow answers included."""
        kinds = [name for name, _ in cls()._table()]
        rates = {f"rate_{name}": total / len(kinds) for name in kinds}
        return cls(**rates, seed=seed, **options)

    def _table(self) -> list[tuple[str, float]]:
        return [
            ("429", self.rate_429), ("5xx", self.rate_5xx), ("reset", self.rate_reset),
            ("hang", self.rate_hang), ("truncated", self.rate_truncated), ("bad_schema", self.rate_bad_schema),
            ("bad_quote", self.rate_bad_quote), ("empty", self.rate_empty), ("slow", self.rate_slow),
        ]  # fmt: skip

    def draw(self, rng: random.Random) -> Action:
        """One action for one request (call with the server's lock held: `rng` is shared)."""
        r = rng.random()
        for name, rate in self._table():
            if r < rate:
                if name == "429":
                    headers = {} if self.retry_after_s is None else {"Retry-After": f"{self.retry_after_s:g}"}
                    return ("status", 429, headers)
                if name == "5xx":
                    return ("status", rng.choice((500, 502, 503)))
                if name == "hang":
                    return ("hang", self.hang_s)
                if name == "slow":
                    return ("slow", self.slow_s)
                return (name,)
            r -= rate
        return ("ok",)


@dataclass(frozen=True)
class Hit:
    """One chat request as the server saw it."""

    at: float  # time.monotonic() once the body was read
    outcome: str
    body: dict[str, Any]
    headers: dict[str, str]  # names lower-cased


def paper_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The messages up to the paper's own user turn: no re-asks after it.

    Worked examples are earlier user turns that also hold a <paper>; re-asks never do, so the
    paper is the last user turn that does (or the first user turn, for other templates).
    """
    plain = [{"role": str(m.get("role")), "content": str(m.get("content") or "")} for m in messages]
    users = [i for i, m in enumerate(plain) if m["role"] == "user"]
    with_paper = [i for i in users if "<paper>" in plain[i]["content"]]
    end = with_paper[-1] if with_paper else (users[0] if users else len(plain) - 1)
    return plain[: end + 1]


def default_responder(request: dict[str, Any]) -> dict[str, Any]:
    return valid_answer(paper_messages(request.get("messages", [])))


def bad_schema_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """Valid JSON that breaks the schema: a required field missing and an unknown enum value."""
    broken = {k: v for k, v in answer.items() if k != "claims"}
    broken["primary_category"] = "no_such_category"
    return broken


def bad_quote_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """Schema-valid, but the method and dataset names are not in the abstract."""
    datasets = [{"name": MISSING_DATASET, "role": "used"}]
    return {**answer, "method_name": MISSING_NAME, "datasets": datasets}


def _outcome(action: Action) -> str:
    kind = str(action[0])
    if kind == "status":
        code = int(action[1])
        return "429" if code == 429 else "5xx" if code >= 500 else "4xx"
    return kind


def _tokens(text: str) -> int:
    return len(text) // 4


def _mask(key: str) -> str:
    return key[:6] + "*" * max(len(key) - 10, 0) + key[-4:] if len(key) > 10 else "***"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive handler threads must not delay stop()
    request_queue_size = 256  # a burst of 64+ connects must not overflow the listen backlog
    owner: ScriptedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gives up (its timeout) or is killed resets its connections: routine for
        # a server that provokes exactly that, so not worth a traceback on stderr.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # Headers and body go out in separate writes; with Nagle's algorithm against the client's
    # delayed ACK that adds ~45 ms to every request, which would swamp the scripted delays.
    disable_nagle_algorithm = True

    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = 60  # an idle keep-alive connection ends after this

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        if self.path.rstrip("/") == "/v1/models":
            model = {"id": owner.model, "object": "model", "created": 0, "owned_by": "scripted"}
            self._json(200, {"object": "list", "data": [model]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:  # the client died mid-request (kill -9): nothing to answer, and not a request
            self.close_connection = True
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        try:
            body: dict[str, Any] = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
            return
        owner = self.server.owner
        action = owner._record(body, {k.lower(): v for k, v in self.headers.items()})
        owner._enter()
        try:
            if owner.delay_s:
                owner._stopping.wait(owner.delay_s)
            self._act(action, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its timeout); nothing to answer
        finally:
            owner._leave()

    def _act(self, action: Action, body: dict[str, Any]) -> None:
        owner = self.server.owner
        kind = action[0]
        if kind == "status":
            code = int(action[1])
            headers: dict[str, str] = dict(action[2]) if len(action) > 2 else {}
            message = f"scripted HTTP {code}"
            if code == 401:  # as OpenAI does: the key, masked
                key = self.headers.get("Authorization", "").removeprefix("Bearer ")
                message = f"Incorrect API key provided: {_mask(key)}."
            self._json(code, {"error": {"message": message, "type": "scripted", "code": code}}, headers)
        elif kind == "reset":
            self._reset()
        elif kind == "hang":
            owner._stopping.wait(float(action[1]))
            self._reset()
        elif kind == "cut_body":
            self._completion(body, json.dumps(owner._respond(body)), cut=True)
        elif kind == "content":
            self._completion(body, str(action[1]))
        elif kind == "raw":  # any status with any body, e.g. a proxy's HTML page
            self._send(int(action[1]), str(action[2]).encode("utf-8"), {})
        else:
            if kind == "slow":
                owner._stopping.wait(float(action[1]))
            answer = dict(action[1]) if kind == "answer" else owner._respond(body)
            if kind == "bad_schema":
                answer = bad_schema_answer(answer)
            elif kind == "bad_quote":
                answer = bad_quote_answer(answer)
            text = json.dumps(answer)
            if kind in ("truncated", "length"):
                text = text[: max(len(text) // 2, 1)]
            elif kind == "empty":
                text = ""
            self._completion(body, text, finish_reason="length" if kind == "length" else "stop")

    def _completion(self, body: dict[str, Any], text: str, *, finish_reason: str = "stop", cut: bool = False) -> None:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        tools = body.get("tools") or []
        if tools:
            name = str(tools[0].get("function", {}).get("name", "answer"))
            call = {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                    "function": {"name": name, "arguments": text}}  # fmt: skip
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
        prompt = "".join(str(m.get("content") or "") for m in body.get("messages", []))
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model") or self.server.owner.model),
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
            "usage": {
                "prompt_tokens": _tokens(prompt),
                "completion_tokens": _tokens(text),
                "total_tokens": _tokens(prompt) + _tokens(text),
            },
        }
        self._json(200, payload, cut=cut)

    def _json(self, code: int, obj: dict[str, Any], headers: dict[str, str] | None = None, cut: bool = False) -> None:
        self._send(code, json.dumps(obj).encode("utf-8"), headers or {}, cut)

    def _send(self, code: int, data: bytes, headers: dict[str, str], cut: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if cut:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._reset()
            return
        self.wfile.write(data)

    def _reset(self) -> None:
        """Close at once with a TCP reset (SO_LINGER 0), no response."""
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


@dataclass
class ScriptedServer:
    """OpenAI-compatible loopback server with a script, seeded faults and counters.

    Use as a context manager, or `start()` / `stop()`. `base_url` is ready after start.
    """

    responder: Responder | None = None
    _: KW_ONLY
    delay_s: float = 0.0  # added to every chat request (interrupted by stop())
    faults: Faults | None = None
    script: Iterable[Action] | None = None
    model: str = "scripted"
    hits: list[Hit] = field(default_factory=list, init=False)
    counts: Counter[str] = field(default_factory=Counter, init=False)
    peak_in_flight: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._queue: deque[Action] = deque(self.script or ())
        self._lock = threading.Lock()
        self._rng = random.Random(self.faults.seed if self.faults else 0)
        self._stopping = threading.Event()
        self._in_flight = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- what tests read ----------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every chat request body received, in arrival order."""
        with self._lock:
            return [hit.body for hit in self.hits]

    @property
    def outcomes(self) -> list[str]:
        with self._lock:
            return [hit.outcome for hit in self.hits]

    @property
    def pending(self) -> int:
        """Script actions not consumed yet."""
        with self._lock:
            return len(self._queue)

    def push(self, *actions: Action) -> None:
        """Append actions to the script (thread-safe; works while serving)."""
        with self._lock:
            self._queue.extend(actions)

    # -- called by the handler threads --------------------------------------------
    def _record(self, body: dict[str, Any], headers: dict[str, str]) -> Action:
        with self._lock:
            if self._queue:
                action = self._queue.popleft()
            elif self.faults is not None:
                action = self.faults.draw(self._rng)
            else:
                action = ("ok",)
            outcome = _outcome(action)
            self.counts[outcome] += 1
            self.hits.append(Hit(at=time.monotonic(), outcome=outcome, body=body, headers=headers))
            return action

    def _respond(self, body: dict[str, Any]) -> dict[str, Any]:
        return (self.responder or default_responder)(body)

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    # -- life cycle ---------------------------------------------------------------
    def start(self) -> ScriptedServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, name="scripted-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hanging or slow handlers are woken and end at once."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------
# In a child process


@dataclass(frozen=True)
class ServerReport:
    """What a `ServerProcess` saw: chat requests, their outcomes, the most handled at once."""

    requests: int
    counts: dict[str, int]
    peak_in_flight: int


def _serve_in_child(conn: Connection, options: dict[str, Any]) -> None:
    server = ScriptedServer(**options).start()
    try:
        conn.send(server.base_url)
        while conn.recv() != "stop":
            conn.send(_report(server))
        server.stop()
        conn.send(_report(server))
    except (EOFError, OSError):  # the parent went away
        pass
    finally:
        server.stop()


def _report(server: ScriptedServer) -> ServerReport:
    with server._lock:
        return ServerReport(len(server.hits), dict(server.counts), server.peak_in_flight)


class ServerProcess:
    """A `ScriptedServer` in a child process: for runs whose client keeps a core busy.

    In one process, a CPU-bound client (instructor and pydantic at 64 requests in flight)
    can hold the GIL long enough that the server reads a request only after the client
    has timed out and reset it; the server then never sees a request the client counted.
    Options are `ScriptedServer`'s keyword arguments (a responder must be picklable).
    """

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._conn: Connection | None = None
        self._proc: BaseProcess | None = None
        self.base_url = ""

    def start(self) -> ServerProcess:
        parent, child = multiprocessing.Pipe()
        self._proc = multiprocessing.get_context("spawn").Process(
            target=_serve_in_child, args=(child, self._options), name="scripted-server", daemon=True
        )
        self._proc.start()
        self._conn = parent
        self.base_url = str(parent.recv())
        return self

    def report(self) -> ServerReport:
        assert self._conn is not None, "the server is not started"
        self._conn.send("report")
        report: ServerReport = self._conn.recv()
        return report

    def stop(self) -> ServerReport | None:
        """Stop the child; returns its final report (None if it was not running)."""
        if self._conn is None or self._proc is None:
            return None
        report: ServerReport | None = None
        try:
            self._conn.send("stop")
            report = self._conn.recv()
        except (EOFError, OSError):
            pass
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._conn.close()
        self._conn = self._proc = None
        return report

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
