"""`edge-infer tune`: the most accurate MobileNet setting that meets a speed target on this board.

The candidates (model x threads) are measured end to end by the bench's workers, as `edge-infer
run` would run them; the choice is the highest published ImageNet top-1 among the settings whose
frame rate (or per-frame latency) beats the target by a margin, since a board that is warm, or
busy with something else, is slower than the same board measured cold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .load import ConfigLoad
from .results import Measurement, Report


class Setting(Protocol):
    """What a choice sets in `model:`."""

    path: str
    threads: int
    delegate: str


@dataclass(frozen=True)
class Target:
    fps: float | None = None  # at least this many frames per second, end to end
    latency_ms: float | None = None  # at most this long per frame (p90), end to end
    min_top1: float | None = None  # published ImageNet top-1 %, at least
    margin: float = 0.15  # the measurement must beat the target by this fraction

    def met_by(self, result: Measurement) -> bool:
        if self.fps is not None and result.pipeline.fps < self.fps * (1 + self.margin):
            return False
        if self.latency_ms is not None and result.pipeline.p90_ms > self.latency_ms / (1 + self.margin):
            return False
        return self.min_top1 is None or (result.published_top1 or 0.0) >= self.min_top1

    def describe(self) -> str:
        wanted = [f"{self.fps:g} fps" if self.fps is not None else "",
                  f"{self.latency_ms:g} ms per frame" if self.latency_ms is not None else "",
                  f"top-1 >= {self.min_top1:g} %" if self.min_top1 is not None else ""]
        return ", ".join(w for w in wanted if w) + f" (with a {self.margin:.0%} margin)"


def choose(report: Report, target: Target) -> Measurement | None:
    """The most accurate setting that meets the target; among equals the faster, then the fewer threads
    (cores left for the rest of the board). Models without a published top-1 come last."""
    meeting = [r for r in report.results if isinstance(r, Measurement) and target.met_by(r)]
    if not meeting:
        return None
    return max(meeting, key=lambda r: (r.published_top1 is not None, r.published_top1 or 0.0, r.pipeline.fps,
                                       -r.threads))


@dataclass(frozen=True)
class LoadCandidate:
    """A model and thread count measured on a whole `cameras:` configuration (bench --config's measurement)."""

    path: str
    threads: int
    delegate: str
    load: ConfigLoad
    top1: float | None  # published, from the zoo


def choose_load(candidates: list[LoadCandidate], target: Target) -> LoadCandidate | None:
    """For a `cameras:` configuration: the most accurate candidate whose slowest camera reaches the target
    rate with the margin; among equals the faster, then the fewer threads."""
    meeting = [c for c in candidates
               if (target.fps is None or c.load.slowest_camera_fps >= target.fps * (1 + target.margin))
               and (target.min_top1 is None or (c.top1 or 0.0) >= target.min_top1)]
    if not meeting:
        return None
    return max(meeting, key=lambda c: (c.top1 is not None, c.top1 or 0.0, c.load.slowest_camera_fps, -c.threads))


def model_settings(choice: Setting) -> dict[str, str]:
    """The `model:` keys that select `choice`, as YAML scalars."""
    return {"path": choice.path, "num_threads": str(choice.threads), "delegate": choice.delegate}


def settings_yaml(choice: Setting) -> str:
    return "model:\n" + "".join(f"  {key}: {value}\n" for key, value in model_settings(choice).items())


def write_choice(config_text: str, choice: Setting) -> str:
    """`config_text` with the `model:` section's keys set to `choice`, every other line (comments too) kept."""
    lines = config_text.splitlines(keepends=True)
    settings = model_settings(choice)
    section = next((i for i, line in enumerate(lines) if re.match(r"^model:\s*(#.*)?$", line)), None)
    if section is None:
        return config_text + ("" if config_text.endswith("\n") or not config_text else "\n") + settings_yaml(choice)
    end = next((i for i in range(section + 1, len(lines)) if re.match(r"^\S", lines[i])), len(lines))
    for i in range(section + 1, end):
        found = re.match(r"^(\s+)(\w+):(\s*)([^#\n]*?)(\s*#.*)?$", lines[i].rstrip("\n"))
        if found and found.group(2) in settings:
            indent, key, space, _, comment = found.groups()
            lines[i] = f"{indent}{key}:{space or ' '}{settings.pop(key)}{comment or ''}\n"
    lines[section + 1:section + 1] = [f"  {key}: {value}\n" for key, value in settings.items()]
    return "".join(lines)


def write_config(path: Path, choice: Setting) -> None:
    text = path.read_text() if path.exists() else ""
    path.write_text(write_choice(text, choice))
