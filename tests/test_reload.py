"""service/reload.py: the run's config watch applies a changed file, and only a usable one."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from edge_infer.errors import ConfigError
from edge_infer.service.reload import ConfigWatch


def touch(path: Path, text: str) -> None:
    path.write_text(text)
    status = path.stat()
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))  # a coarse clock still sees it


def test_a_changed_file_is_applied_once_and_a_broken_one_never(tmp_path: Path, caplog):
    config = tmp_path / "config.yaml"
    touch(config, "a")
    applied: list[str] = []

    def read() -> str:
        text = config.read_text()
        if "broken" in text:
            raise ConfigError(f"{config}:1: broken")
        return text

    watch = ConfigWatch([str(config)], read, lambda _previous, new: applied.append(new), "a")
    assert not watch.check() and applied == []  # as it was when the run started
    touch(config, "b")
    assert watch.check() and applied == ["b"]
    assert not watch.check() and applied == ["b"]  # once
    with caplog.at_level(logging.ERROR):
        touch(config, "broken")
        assert not watch.check()
    assert applied == ["b"] and "changed, but cannot be used" in caplog.text
    assert "the run goes on as it was" in caplog.text
    touch(config, "c")  # fixed: applied
    assert watch.check() and applied == ["b", "c"]
    config.unlink()  # gone (an editor's rename in progress): nothing happens
    assert not watch.check()


def test_the_watch_thread_is_started_and_joined(tmp_path: Path):
    import threading

    config = tmp_path / "config.yaml"
    touch(config, "a")
    watch = ConfigWatch([str(config)], config.read_text, lambda _previous, _new: None, "a", interval_s=0.05)
    watch.start()
    assert any(thread.name == "config-watch" for thread in threading.enumerate())
    watch.close()
    assert not any(thread.name == "config-watch" for thread in threading.enumerate())
