"""Argument parsing shared by the commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..errors import ConfigError

Number = TypeVar("Number", int, float)


def numbers(flag: str, text: str, kind: Callable[[str], Number]) -> list[Number]:
    """A comma-separated list of numbers, as `--threads 1,2` or `--alphas 0.25,0.5` give it."""
    try:
        return [kind(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"{flag}: '{text}' is not a comma-separated list of numbers") from None
