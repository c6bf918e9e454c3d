"""The verdicts doctor gives, and how its checks run commands."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ...security.redact import redact

Verdict = Literal["ok", "warn", "fail", "skip"]
SERVICE = "edge-infer"  # the systemd unit and the system user deploy.sh creates


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    detail: str
    fix: str | None = None

    def __post_init__(self) -> None:  # a camera URL's password, in an error a check quotes, is never shown
        object.__setattr__(self, "detail", redact(self.detail))
        if self.fix is not None:
            object.__setattr__(self, "fix", redact(self.fix))

    def as_json(self) -> dict[str, str | None]:
        return {"name": self.name, "verdict": self.verdict, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def failed(self) -> int:
        return sum(check.verdict == "fail" for check in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {"checks": [check.as_json() for check in self.checks], "failed": self.failed}


@dataclass(frozen=True)
class CommandResult:
    status: int
    stdout: str
    stderr: str

    @property
    def last_error(self) -> str:
        """The last line on stderr: a traceback's exception line, or a tool's one-line complaint."""
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {self.status}"


class Runner(Protocol):
    """Runs a command; None when it is not installed."""

    def __call__(self, argv: Sequence[str], *, timeout: float = 10.0,
                 env: Mapping[str, str] | None = None) -> CommandResult | None: ...


TIMED_OUT = 124  # as timeout(1) says it


def run_command(argv: Sequence[str], *, timeout: float = 10.0,
                env: Mapping[str, str] | None = None) -> CommandResult | None:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, errors="replace", timeout=timeout,
                              env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL)
    except (FileNotFoundError, PermissionError):
        return None
    except subprocess.TimeoutExpired:
        return CommandResult(TIMED_OUT, "", f"timed out after {timeout:g} s")
    return CommandResult(done.returncode, done.stdout, done.stderr)


SEVERITY: tuple[Verdict, ...] = ("fail", "warn", "ok", "skip")


def worst(verdicts: Sequence[Verdict]) -> Verdict:
    return next((verdict for verdict in SEVERITY if verdict in verdicts), "skip")


def joined(parts: Sequence[str | None]) -> str | None:
    kept = [p for p in parts if p]
    return "; ".join(dict.fromkeys(kept)) if kept else None  # the same fix twice reads as a bug
