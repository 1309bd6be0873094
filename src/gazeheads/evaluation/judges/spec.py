"""Judge specs: the one string a user writes (`--judge ...`), parsed once into a `JudgeSpec`.

    KIND[:MODEL][@BASE_URL][,OPTION=VALUE ...]

    truth                                   exact captions/attributes of synthetic data
    captions:<model name or path>           sentence-transformers similarity to the captions
    anthropic[:<model>][@<base url>]        Claude (default model claude-sonnet-4-6)
    openai:<model>[@<base url>]             OpenAI, or any OpenAI-compatible endpoint

Parsing checks everything that can be checked without a key, a network or a model (the
kind, the model, the URL, every option and its value), so a bad spec fails before
anything loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from .base import JudgeError

JUDGE_SPECS = ("truth", "captions:<model name or path>", "anthropic[:<model>][@<base_url>]",
               "openai:<model>[@<base_url>]")
DEFAULT_MODELS = {"anthropic": "claude-sonnet-4-6"}  # the published gaze-heads code's judge model
LLM_KINDS = ("anthropic", "openai")


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError("expected true or false")


def _number(kind: type, minimum: float | None = None, none: bool = False) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if none and text.strip().lower() == "none":
            return None
        value = kind(text)
        if minimum is not None and value < minimum:
            raise ValueError(f"expected at least {minimum}")
        return value

    return parse


def _choice(*values: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.strip().lower() not in values:
            raise ValueError(f"expected one of {', '.join(values)}")
        return text.strip().lower()

    return parse


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError("expected a value")
    return text.strip()


def _temperature(text: str) -> float | str | None:
    return "auto" if text.strip().lower() == "auto" else _number(float, 0.0, none=True)(text)


_THRESHOLD = {"baseline_threshold": (_number(float, 0.0, none=True), "float or none")}
_LLM_OPTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "batch": (_choice("auto", "always", "never"), "auto | always | never"),
    "batch_min": (_number(int, 1), "int"),
    "batch_size": (_number(int, 1), "int"),
    "poll_s": (_number(float, 0.0), "seconds"),
    "batch_wait_s": (_number(float, 0.0, none=True), "seconds or none"),
    "max_tokens": (_number(int, 1), "int"),
    "timeout_s": (_number(float, 0.001), "seconds"),
    "max_retries": (_number(int, 0), "int"),
    "key_env": (_text, "environment variable"),
    "require_key": (_bool, "true | false"),
    "image_format": (_choice("jpeg", "png"), "jpeg | png"),
    "max_side": (_number(int, 1), "pixels"),
    "ask_same_as_baseline": (_bool, "true | false"),
    "progress": (_bool, "true | false"),
    **_THRESHOLD,
}
OPTIONS: dict[str, dict[str, tuple[Callable[[str], Any], str]]] = {
    "truth": dict(_THRESHOLD),
    "captions": {"device": (_text, "torch device"), "min_similarity": (_number(float), "float"), **_THRESHOLD},
    "anthropic": _LLM_OPTIONS,  # no temperature: the API (version 2026-10-21) refuses one on every model
    "openai": {**_LLM_OPTIONS, "temperature": (_temperature, "float, none or auto")},
}

_OPTION_AT_END = re.compile(r",\s*([A-Za-z_][A-Za-z0-9_]*)\s*=([^,]*)$")
_URL_AT_END = re.compile(r"^(.*?)@([A-Za-z][A-Za-z0-9+.-]*://.*)$")
_HOST_PORT_AT_END = re.compile(r"@[\w.-]+:\d+(/.*)?$")


def _problem(spec: str, problem: str, fix: str | None = None) -> JudgeError:
    return JudgeError(f"Bad judge spec {spec!r}: {problem}", fix or f"Use one of: {', '.join(JUDGE_SPECS)}.")


def check_base_url(url: str, spec: str = "") -> str:
    """The URL without a trailing slash, or a JudgeError when it is not an http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _problem(spec or url, f"the base URL {url!r} is not an http(s) URL with a host.",
                       "Write it in full, e.g. http://localhost:8000/v1 or https://api.openai.com/v1.")
    return url.rstrip("/")


@dataclass(frozen=True)
class JudgeSpec:
    """A parsed judge spec: which judge, which model and endpoint, and its options (typed values).

    `JudgeSpec.parse("anthropic:claude-sonnet-4-6,batch=always")`; `str(spec)` writes it back.
    """

    kind: str
    model: str | None = None
    base_url: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, text: "str | JudgeSpec") -> "JudgeSpec":
        """Parse and check a spec; a JudgeError says what is wrong and how to write it."""
        if isinstance(text, JudgeSpec):
            return text
        spec = str(text).strip()
        head, raw_options = spec, []
        while match := _OPTION_AT_END.search(head):
            raw_options.insert(0, (match.group(1).lower(), match.group(2)))
            head = head[: match.start()]
        kind, rest = re.match(r"([A-Za-z_]*)(.*)$", head.strip(), re.DOTALL).groups()  # type: ignore[union-attr]
        kind, rest = kind.lower(), rest.strip()
        if kind not in OPTIONS or (rest and rest[0] not in ":@"):
            raise _problem(spec, f"unknown judge kind {head.split(':')[0]!r}." if head.strip() else "it is empty.")
        rest = rest[1:].strip() if rest.startswith(":") else rest
        model, base_url = cls._model_and_url(spec, kind, rest)
        options = {}
        for name, value in raw_options:
            if name not in OPTIONS[kind]:
                known = ", ".join(f"{n}=<{hint}>" for n, (_, hint) in OPTIONS[kind].items())
                raise _problem(spec, f"the {kind} judge has no option {name!r}.", f"Its options: {known}.")
            parse, hint = OPTIONS[kind][name]
            try:
                options[name] = parse(value)
            except ValueError as exc:
                raise _problem(spec, f"bad value {value!r} for {name} ({exc}).", f"Write {name}=<{hint}>.") from None
        return cls(kind, model, base_url, tuple(options.items()))

    @staticmethod
    def _model_and_url(spec: str, kind: str, rest: str) -> tuple[str | None, str | None]:
        if kind == "truth":
            if rest:
                raise _problem(spec, "the truth judge takes no model.", "Write just: truth")
            return None, None
        if kind == "captions":
            if not rest:
                raise _problem(spec, "no embedding model given.",
                               "Write captions:<sentence-transformers model or path>, e.g. captions:all-MiniLM-L6-v2.")
            return rest, None
        model, base_url = rest, None
        if match := _URL_AT_END.match(rest):
            model, base_url = match.group(1).strip(), check_base_url(match.group(2).strip(), spec)
        elif _HOST_PORT_AT_END.search(rest):
            raise _problem(spec, "the base URL after '@' has no scheme.",
                           f"Write {kind}:<model>@http://<host>:<port>/... (or https://).")
        model = model or DEFAULT_MODELS.get(kind)
        if not model:
            raise _problem(spec, f"no model named for the {kind} judge.",
                           f"Write {kind}:<model>" + ("@<base_url>." if kind == "openai" else "."))
        return model, base_url

    @property
    def name(self) -> str:
        """The judge's name, as its verdicts and a run's settings carry it."""
        return self.kind if self.model is None else f"{self.kind}:{self.model}"

    @property
    def calls_model(self) -> bool:
        """True for judges that send every verdict to a vendor's model (they keep a verdict cache)."""
        return self.kind in LLM_KINDS

    def kwargs(self) -> dict[str, Any]:
        """The options as keyword arguments of the judge's constructor."""
        return dict(self.options)

    def __str__(self) -> str:
        text = self.name + (f"@{self.base_url}" if self.base_url else "")
        for name, value in self.options:
            text += f",{name}={'none' if value is None else str(value).lower() if isinstance(value, bool) else value}"
        return text


def parse_judge_spec(text: str) -> JudgeSpec:
    """`JudgeSpec.parse` as a function, e.g. as a command-line option type (errors are JudgeErrors)."""
    return JudgeSpec.parse(text)
