"""The `teach:` section: where the live page keeps its datasets and taught models, and its limits."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class TeachConfig:
    # null: $STATE_DIRECTORY/teach under systemd (/var/lib/edge-infer/teach), else ~/.local/share/edge-infer/teach
    directory: str | None = field(default=None, metadata={"min_length": 1})
    max_samples_per_class: int = field(default=200, metadata={"min": 2, "max": 5000})
    max_classes: int = field(default=20, metadata={"min": 2, "max": 200})
    max_upload_megabytes: float = field(default=8.0, metadata={"min": 0.1, "max": 100.0})  # a photo sent from the page


def teach_directory(config: TeachConfig, environ: Mapping[str, str] = os.environ) -> Path:
    if config.directory:
        return Path(config.directory).expanduser()
    state = environ.get("STATE_DIRECTORY")  # systemd's StateDirectory= (the only writable place in the unit)
    if state:
        return Path(state.split(":")[0]) / "teach"
    data = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "edge-infer" / "teach"
