"""The one settings object. Every default lives here and only here.

Values come from, highest first: arguments (the CLI's options), environment variables with the
`SUMMARIZER_` prefix (the standard `OPENAI_API_KEY` and `OPENAI_BASE_URL` are honoured too),
`summarizer.toml` in the current directory (the project's), the user's `config.toml` in
`user_config_dir("summarizer")`, then the defaults here. Fields are split in two groups on purpose: those that
change what the model produces (and so belong in the cache key, see `output_fingerprint`)
and operational ones (timeouts, retries, concurrency, paths) that must never invalidate a
cache.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from platformdirs import user_config_dir
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

Backend = Literal["auto", "embedded", "openai"]
InstructorMode = Literal["auto", "llamacpp_json", "json_schema", "json", "md_json", "tools"]

#: Default embedded model: Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (official file's hash).
DEFAULT_MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
DEFAULT_MODEL_SIZE = 1_117_320_768
DEFAULT_MODEL_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m"


#: (request timeout, per-paper deadline) in seconds, per backend. A remote API answers in seconds
#: (120 s leaves a slow local server 900 tokens at under 10 tokens/s); the embedded model's
#: longest answer on 2 cores (a cold 1,700-token prompt, then up to 900 tokens at ~12 tokens/s) is
#: about 2 minutes, the longest seen 115 s. The deadline bounds all of a paper's retries,
#: re-asks and Retry-After waits, which at one request's timeout times six attempts was an hour.
BACKEND_TIMEOUTS = {"openai": (120.0, 600.0), "embedded": (300.0, 900.0)}


PROJECT_CONFIG_NAME = "summarizer.toml"
#: The share of papers about the subject that each `mix` assumes (round values describing the
#: inputs: a raw day of a broad arXiv category, a topical mix, a reading list).
MIX_SHARES = {"feed": 0.10, "mixed": 0.50, "curated": 0.95}


def project_config_path() -> Path:
    return Path.cwd() / PROJECT_CONFIG_NAME


def user_config_path() -> Path:
    return Path(user_config_dir("summarizer")) / "config.toml"


def _default_prompts_dir() -> Path:
    # A wheel carries the prompts inside the package; a clone or an editable install has them
    # beside it. The package's own copy first: an installed package's PROJECT_ROOT is
    # site-packages, where a prompts/ folder would be some other distribution's.
    packaged = Path(__file__).resolve().parent / "prompts"
    return packaged if packaged.is_dir() else PROJECT_ROOT / "prompts"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SUMMARIZER_",
        env_file=None,
        extra="ignore",
        populate_by_name=True,
    )

    # --- which model ---------------------------------------------------------------
    backend: Backend = Field(
        "auto", description="embedded (local llama.cpp), openai (any OpenAI-compatible server), or auto."
    )
    model: str | None = Field(
        None, description="Model name on an OpenAI-compatible server; for embedded, a label only."
    )
    api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SUMMARIZER_API_KEY", "OPENAI_API_KEY", "api_key")
    )
    base_url: str | None = Field(
        None, validation_alias=AliasChoices("SUMMARIZER_BASE_URL", "OPENAI_BASE_URL", "base_url")
    )
    instructor_mode: InstructorMode = "auto"
    model_path: Path | None = Field(None, description="A GGUF file for the embedded backend instead of the default.")
    n_ctx: int = Field(8192, ge=512)
    n_threads: int | None = Field(None, ge=1)

    # --- what the model is asked (all part of the cache key) -----------------------------
    prompts_dir: Path = Field(default_factory=_default_prompts_dir)
    taxonomy_path: Path | None = Field(None, description="Replace the default taxonomy (prompts/taxonomy.toml).")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(900, ge=64)
    seed: int | None = 0
    max_reasks: int = Field(2, ge=0, le=10, description="Validation re-asks after the first attempt.")
    max_abstract_chars: int = Field(6000, ge=200, description="Longer abstracts are truncated, with a warning.")
    decisions: Literal["generated", "scored", "auto"] = Field(
        "auto",
        description="How closed-set labels are decided: generated inside the one JSON answer (one request per "
        "paper), or scored: that answer plus one-token questions whose log-probabilities decide the subject, "
        "category and datasets (one request per question: cheap on a local server that reuses the paper's "
        "prefix, costly on a paid API). auto: scored where questions are cheap (the embedded server), else "
        "generated. README, 'How labels are decided'.",
    )
    calibration_path: Path | None = Field(
        None, description="Replace the calibration of scored decisions (prompts/calibration.json)."
    )
    mix: Literal["feed", "mixed", "curated"] = Field(
        "mixed",
        description="What is being tagged, for scored decisions: a raw listing of a broad field (feed: about "
        f"{MIX_SHARES['feed']:.0%} on the subject), a mixed page ({MIX_SHARES['mixed']:.0%}), or a curated "
        f"reading list ({MIX_SHARES['curated']:.0%}). The subject gate leans accordingly.",
    )
    on_topic_share: float | None = Field(
        None, gt=0.0, lt=1.0, description="The expected share of papers about the subject; replaces `mix`."
    )

    # --- operational (never part of the cache key) ----------------------------------
    timeout_s: float | None = Field(None, gt=0, description="Per request; default: the backend's (BACKEND_TIMEOUTS).")
    paper_deadline_s: float | None = Field(
        None, gt=0, description="Per paper, all its retries and re-asks together; default: the backend's."
    )
    max_retries: int = Field(5, ge=0, description="Transport retries per call (timeouts, 429, 5xx).")
    retry_max_wait_s: float = Field(60.0, gt=0)
    concurrency: int = Field(8, ge=1)
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    cache_dir: Path = Path("cache")
    use_cache: bool = True
    model_cache_dir: Path | None = Field(
        None, description="Where the default model is assembled; default: user cache dir."
    )

    # --- batch runs: cost control (operational, never part of the cache key) -----------
    max_cost_usd: float | None = Field(None, gt=0, description="Stop a batch run cleanly at this estimated spend.")
    max_total_tokens: int | None = Field(None, gt=0, description="Stop a batch run cleanly at this many tokens.")
    price_table_path: Path | None = Field(
        None,
        description="A TOML price table (USD per 1M tokens) whose entries come before the genai-prices catalogue.",
    )
    expected_output_tokens: int = Field(
        400, ge=1, description="Output tokens assumed per paper when estimating a run's cost before it runs."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Paths are looked up on every construction: the current directory is the project.
        return (
            init_settings,
            env_settings,
            ConfigFile(settings_cls, project_config_path()),
            ConfigFile(settings_cls, user_config_path()),
        )

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @property
    def resolved_backend(self) -> Literal["embedded", "openai"]:
        """`auto` picks a server only when the user chose one: a base URL, or a model that is not
        the embedded one. A key alone does not: OPENAI_API_KEY sits in many environments for other
        tools, and silently sending papers to a paid API because of it would surprise (and bill)."""
        if self.backend != "auto":
            return self.backend
        if self.base_url:
            return "openai"
        remote_model = self.model is not None and self.model_path is None and self.model != DEFAULT_MODEL_NAME
        return "openai" if remote_model else "embedded"

    @property
    def expected_share(self) -> float:
        """The share of papers about the subject that scored decisions assume."""
        return self.on_topic_share if self.on_topic_share is not None else MIX_SHARES[self.mix]

    @property
    def resolved_calibration_path(self) -> Path:
        return self.calibration_path or self.prompts_dir / "calibration.json"

    @property
    def request_timeout_s(self) -> float:
        return self.timeout_s or BACKEND_TIMEOUTS[self.resolved_backend][0]

    @property
    def resolved_paper_deadline_s(self) -> float:
        return self.paper_deadline_s or BACKEND_TIMEOUTS[self.resolved_backend][1]

    @property
    def resolved_taxonomy_path(self) -> Path:
        return self.taxonomy_path or self.prompts_dir / "taxonomy.toml"

    def sampling(self) -> dict[str, Any]:
        """Sampling settings: they change the output, so they are part of the cache key."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "max_reasks": self.max_reasks,
            "max_abstract_chars": self.max_abstract_chars,
        }

    def check(self) -> None:
        where = url_credentials(self.base_url) if self.base_url else None
        if where:
            # The openai client's own debug log prints its base URL (and the manifest keeps its
            # path), so a key anywhere in it would leak. The message does not echo the URL.
            raise ConfigError(
                f"the base URL carries credentials ({where}); give the key in "
                "SUMMARIZER_API_KEY or OPENAI_API_KEY and the URL without them"
            )
        if self.resolved_backend == "openai" and not self.base_url and not self.api_key:
            raise ConfigError(
                "backend 'openai' needs an API key (OPENAI_API_KEY) or a base URL (OPENAI_BASE_URL) "
                "of an OpenAI-compatible server"
            )
        if self.model_path is not None and not self.model_path.is_file():
            raise ConfigError(f"model file {self.model_path} does not exist")


# Path segments that are keys: the prefixes of common providers' keys, or a long random token
# (no endpoint path segment is 32 characters of letters and digits mixed).
_KEY_SEGMENT = re.compile(r"^(?:sk|rk|gsk|hf|xai)[-_][\w-]{8,}$|^AIza[\w-]{20,}$")
_TOKEN_SEGMENT = re.compile(r"^(?=[\w.~-]*\d)(?=[\w.~-]*[A-Za-z])[\w.~-]{32,}$")


def url_credentials(url: str) -> str | None:
    """Where `url` seems to carry a secret (user:password@, a query string or fragment, a key-like
    path segment), or None. A query string is refused whole: any parameter of one can be a key."""
    parts = urlsplit(url)
    if "@" in (parts.netloc or ""):
        return "user:password@host"
    if parts.query or parts.fragment:
        return "a query string or fragment"
    for segment in parts.path.split("/"):
        if _KEY_SEGMENT.match(segment) or _TOKEN_SEGMENT.match(segment):
            return "a key-like part of the path"
    return None


def _field_of(settings_cls: type[BaseSettings]) -> dict[str, str]:
    """Every name a source may report a value under (field name or alias) -> the field."""
    names: dict[str, str] = {}
    for name, info in settings_cls.model_fields.items():
        names[name] = name
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update({str(choice): name for choice in alias.choices})
        elif isinstance(alias, str):
            names[alias] = name
    return names


class ConfigFile(TomlConfigSettingsSource):
    """A TOML config file (absent: no values). Unreadable TOML or an unknown key is a one-line
    `ConfigError` naming the file: a misspelt key silently ignored would look like a setting in force."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        self.path = path
        try:
            super().__init__(settings_cls, toml_file=path)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: not valid TOML ({exc})") from None
        except OSError as exc:
            raise ConfigError(f"config file {path}: cannot read it ({exc.strerror or exc})") from None
        known = set(settings_cls.model_fields)
        for key in self.toml_data:
            if key not in known:
                raise ConfigError(
                    f"config file {path}: unknown key {key!r} (keys are the settings' names, e.g. model, base_url, "
                    "cache_dir; see `summarizer config show`)"
                )

    def fields(self) -> set[str]:
        """The settings this file gives a value for."""
        return set(self.toml_data)


@dataclass(frozen=True)
class Origin:
    """Where a setting's value came from: kind is cli, env, project, user or default; name is the
    option, variable or file."""

    kind: Literal["cli", "env", "project", "user", "default"]
    name: str = ""

    def __str__(self) -> str:
        label = {"cli": "CLI", "env": "env", "project": "project file", "user": "user file", "default": "default"}
        return f"{label[self.kind]} {self.name}".rstrip()


def setting_origins(
    overrides: Mapping[str, Any] | None = None, names: Mapping[str, str] | None = None
) -> dict[str, Origin]:
    """Where each field of `Settings(**overrides)` gets its value, by the sources' precedence.

    Reads the config files again (a `ConfigError` for a broken one) but never validates a value,
    so it can also say where a bad value came from.
    """
    given, fields, env_names = dict(overrides or {}), _field_of(Settings), _env_names()
    from_env = {fields[key] for key in EnvSettingsSource(Settings)() if key in fields}
    project, user = ConfigFile(Settings, project_config_path()), ConfigFile(Settings, user_config_path())
    origins: dict[str, Origin] = {}
    for field in Settings.model_fields:
        if field in given:
            origins[field] = Origin("cli", (names or {}).get(field, field))
        elif field in from_env:
            origins[field] = Origin("env", next((v for v in env_names[field] if v in os.environ), env_names[field][0]))
        elif field in project.fields():
            origins[field] = Origin("project", str(project.path))
        elif field in user.fields():
            origins[field] = Origin("user", str(user.path))
        else:
            origins[field] = Origin("default")
    return origins


def _env_names() -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = [str(c) for c in alias.choices] if isinstance(alias, AliasChoices) else []
        names[field] = [c for c in choices if c.isupper()] or [f"SUMMARIZER_{field.upper()}"]
    return names


@dataclass(frozen=True)
class ShownSetting:
    name: str
    value: str
    origin: Origin


def show_settings(settings: Settings, origins: Mapping[str, Origin]) -> list[ShownSetting]:
    """Every setting as it may be printed: the key only as set/unset, a URL without credentials."""
    from .llm import redact_url

    shown = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if name == "api_key":
            text = "set" if value is not None else "unset"
        elif name == "base_url" and value is not None:
            text = redact_url(value)
        else:
            text = "-" if value is None else str(value)
        shown.append(ShownSetting(name, text, origins.get(name, Origin("default"))))
    return shown


def effective_settings(
    overrides: Mapping[str, Any] | None = None, names: Mapping[str, str] | None = None
) -> tuple[Settings, list[ShownSetting]]:
    """The settings in force and each one as it may be printed, with where it came from."""
    settings = load_settings(overrides, names=names)
    return settings, show_settings(settings, setting_origins(overrides, names))


# Values never echoed in an error: a key, or a URL that may carry one.
_UNECHOED = frozenset({"api_key", "base_url"})


def load_settings(overrides: Mapping[str, Any] | None = None, *, names: Mapping[str, str] | None = None) -> Settings:
    """`Settings(**overrides)`, where a bad value is a one-line `ConfigError` naming where it came from.

    `names` maps an override's field to what the caller calls it (a CLI option); a value from
    the environment is named by its variable, one from a config file by the file and its key.
    The message says what values are allowed.
    """
    given = dict(overrides or {})
    try:
        return Settings(**given)
    except ValidationError as exc:
        origins = setting_origins(given, names)
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            field = _field_of(Settings).get(field, field)
            origin = origins.get(field, Origin("env", f"SUMMARIZER_{field.upper()}"))
            # A file is named with its key; an option or a variable names itself.
            where = f"{origin.name}: {field}" if origin.kind in ("project", "user") else origin.name or field
            value = "" if field in _UNECHOED else f"={error.get('input')!r}"[:80]
            problems.append(f"{where}{value}: {error['msg']}")
        raise ConfigError("invalid setting: " + "; ".join(problems)) from None
