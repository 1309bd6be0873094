"""What `gazeheads verify` reports: one result per check, and the report that holds them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..files import write_text

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, pass/fail/skip, the figure measured and the bound it was held to.

    `detail` keeps the numbers behind the figure (per layer, per head, per panel) for the JSON.
    """

    name: str
    status: str
    measured: str
    bound: str
    detail: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def line(self) -> str:
        """`PASS  <name>  <measured>  (bound <bound>)`, the form the command prints."""
        return f"{self.status.upper():<4}  {self.name}  {self.measured}  (bound {self.bound})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def passed(name: str, measured: str, bound: str, **detail: Any) -> CheckResult:
    return CheckResult(name, PASS, measured, bound, detail)


def failed(name: str, measured: str, bound: str, **detail: Any) -> CheckResult:
    return CheckResult(name, FAIL, measured, bound, detail)


def judged(name: str, ok: bool, measured: str, bound: str, **detail: Any) -> CheckResult:
    return CheckResult(name, PASS if ok else FAIL, measured, bound, detail)


def skipped(name: str, why: str, bound: str = "-", **detail: Any) -> CheckResult:
    return CheckResult(name, SKIP, why, bound, detail)


@dataclass
class VerifyReport:
    """Every check of one `gazeheads verify` run, with what it ran on."""

    model: str
    dtype: str
    device: str
    setup: dict[str, Any] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no check failed (skipped checks do not fail a run)."""
        return not any(c.failed for c in self.checks)

    def failures(self) -> list[str]:
        return [c.name for c in self.checks if c.failed]

    def check(self, name: str) -> CheckResult:
        """The result of the check called `name` (a KeyError names the checks that ran)."""
        for result in self.checks:
            if result.name == name:
                return result
        raise KeyError(f"no check {name!r}; ran: {', '.join(c.name for c in self.checks)}")

    def summary(self) -> str:
        counts = {status: sum(c.status == status for c in self.checks) for status in (PASS, FAIL, SKIP)}
        verdict = "verified" if self.ok else "NOT verified"
        return (f"{verdict}: {counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped "
                f"({self.model}, {self.dtype}, {self.seconds:.0f} s)")

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "dtype": self.dtype, "device": self.device, "passed": self.ok,
                "failures": self.failures(), "setup": self.setup, "checks": [c.to_dict() for c in self.checks],
                "tables": self.tables, "seconds": round(self.seconds, 2)}

    def save(self, path: str | Path) -> Path:
        return write_text(path, json.dumps(self.to_dict(), indent=1, default=str))
