"""Checking a model file before the service trusts it.

Native code cannot be made safe by catching exceptions: a damaged flatbuffer can abort LiteRT
(SIGABRT in allocate_tensors) or make it allocate gigabytes. So the first time a model file is used
it is loaded and invoked once in a child process, under a memory limit and a timeout, and the
verdict is kept, by the file's sha256 and the runtime's version; later starts only hash the file.
A file named like a zoo model must also have the sha256 its publisher gives.

`python -m edge_infer.models.check MODEL` is the child.
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from ..errors import EdgeInferError, ModelError
from .files import ModelFile, read_model
from .runtime import load_runtime, open_interpreter
from .zoo import build_manifest, find_entry, redownload_hint

# The child's address space: Python, numpy and LiteRT with a 14 MB float MobileNet take ~1 GB of it;
# damaged files were seen taking 4.2 GB, more than a Pi 3 or a 2 GB Pi 4 has.
CHECK_MEMORY_BYTES = 2 << 30
CHECK_TIMEOUT_S = 60.0
EXIT_FAILED_CLEANLY = 3  # the runtime raised an error: the in-process load reports it with its own words
EXIT_OUT_OF_MEMORY = 4


def cache_dir() -> Path:
    """Where verdicts are kept: $EDGE_INFER_CACHE, else $XDG_CACHE_HOME/edge-infer, else ~/.cache/edge-infer
    (the service's home is its state directory, /var/lib/edge-infer)."""
    if os.environ.get("EDGE_INFER_CACHE"):
        return Path(os.environ["EDGE_INFER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edge-infer"


def check_model(model: ModelFile, runtime: str) -> None:
    """Raise ModelError when `model` is not the published file of its name, or crashes the interpreter."""
    digest = hashlib.sha256(model.content).hexdigest()
    entry = find_entry(build_manifest(), model.name)
    if entry is not None and entry.published(digest) is False:
        raise ModelError(f"'{model.path}' is not the published {entry.file_name} (its sha256 differs): the file is "
                         f"damaged or was changed; {redownload_hint(model.name)}")
    if model.needs_edgetpu:  # one custom op that runs only on the Coral: nothing the CPU could load
        return
    verdict = cache_dir() / "checked" / f"{digest}-{re.sub(r'[^A-Za-z0-9.]+', '_', runtime)}"
    if verdict.exists():
        return
    crash = crash_in_child(model.path)
    if crash is not None:
        raise ModelError(f"model file '{model.path}' is corrupt (the interpreter {crash} loading it): "
                         f"{redownload_hint(model.name)}")
    try:
        verdict.parent.mkdir(parents=True, exist_ok=True)
        verdict.write_text(f"{model.path}\n")
    except OSError:  # a read-only home: the check runs again next time, nothing worse
        pass


def crash_in_child(path: Path) -> str | None:
    """Load and invoke the model in a child process; what went wrong natively, or None."""

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CHECK_MEMORY_BYTES, CHECK_MEMORY_BYTES))

    try:
        done = subprocess.run([sys.executable, "-m", "edge_infer.models.check", str(path)], capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=CHECK_TIMEOUT_S, preexec_fn=limit_memory)
    except subprocess.TimeoutExpired:
        return f"did not finish within {CHECK_TIMEOUT_S:g} s"
    if done.returncode < 0:
        return f"crashed ({signal.Signals(-done.returncode).name})"
    if done.returncode == EXIT_OUT_OF_MEMORY:
        return f"needed more than {CHECK_MEMORY_BYTES >> 30} GB of memory"
    if done.returncode not in (0, EXIT_FAILED_CLEANLY):
        return f"crashed (exit status {done.returncode})"
    return None


def main() -> int:
    """The child: load, allocate and invoke once on the CPU, one thread, a zero input."""
    try:
        model = read_model(Path(sys.argv[1]))
        interpreter = open_interpreter(load_runtime(), model, num_threads=1)
        interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        interpreter.invoke()
    except MemoryError:
        return EXIT_OUT_OF_MEMORY
    except (EdgeInferError, RuntimeError, ValueError, UnicodeDecodeError) as exc:
        print(" ".join(str(exc).split()))
        return EXIT_FAILED_CLEANLY
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
