"""`gazeheads verify`: prove on the user's own checkpoint what the tests prove on tiny models.

Checks (each a line `PASS|FAIL|SKIP  <name>  <measured>  (bound <bound>)`):

* geometry: image tokens, panel columns, crop and pad, chat template, panel localisation;
* exactness, in the model's dtype (and the capture check again in float32): captured rows = eager
  rows; the bias moves exactly the chosen heads, equals eager steering and puts >= 0.99 of their
  image attention on the target;
* numerics: the bias neither overflows nor vanishes in the model's dtype;
* prefix: prefix-shared discovery = one forward per question;
* causal (with a ranking): top-K gaze vs random control vs unsteered on a few strips.

    from gazeheads.verify import verify_model
    report = verify_model(gm, strip)          # a VerifyReport; report.ok, report.check("image tokens")

Names load on first use, so the command line's --help imports no torch. See docs/verify.md.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

GROUPS = ("geometry", "exactness", "numerics", "prefix", "float32", "causal")
"""The check groups (all run by default; causal only with a ranking)."""

_EXPORTS = {"CheckResult": "result", "VerifyReport": "result", "VerifyOptions": "runner", "verify_model": "runner",
            "sample_layers": "runner", "float32_weights": "precision"}

__all__ = ["GROUPS", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gazeheads.verify' has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
