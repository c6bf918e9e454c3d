"""Inference in a supervised worker process: an accelerator's native library can abort, and only the worker dies.

libedgetpu's USB driver calls LOG(FATAL) on any USB error but a timeout or a cancel (google-coral/libedgetpu
driver/usb/usb_driver.cc, HandleEvent and the transfer paths; google-coral/edgetpu#494 shows the abort): a
Coral pulled out aborts the process that holds its delegate. With `model.isolate` (auto: every accelerator;
true: the CPU too) that process is a worker, and the run only loses its results for a moment.

    run (inference loop)                         worker (python -m edge_infer.pipeline.worker FD)
    IsolatedClassifier.input_tensor() -> shared memory (memfd, allocated once, kept across restarts)
    invoke(): send b"i"  ------------------->    copy the input into the interpreter, invoke,
                         <-------------------    copy the raw scores into shared memory, send b"k"
    read_scores(): dequantize from shared memory

Messages go over a SOCK_SEQPACKET socket pair (one message, one packet; EOF when the worker is gone). A
worker that dies (any signal, any exit) is logged once, with the signal and its last native stderr lines,
and started again at once, then after 1, 2, 4 ... 60 s; meanwhile each invoke raises WorkerDown (the frame is
passed over), or the slot's failover runs the fallback model. A worker that does not answer within
INVOKE_TIMEOUT_S is killed and handled the same way.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import mmap
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

import numpy as np

from ..errors import EdgeInferError, ModelError, RuntimeUnavailableError, WorkerDown
from ..models.graph import GraphCost
from ..sources.reconnect import Backoff
from .classifier import Classifier, LoadedModel, ModelConfig
from .postprocess import dequantize

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # loading a model and opening its device (a USB Coral's first open uploads firmware)
INVOKE_TIMEOUT_S = 30.0  # an invoke this slow is a hung device
STOP_TIMEOUT_S = 2.0
FIRST_RESTART_S = 1.0
LONGEST_RESTART_S = 60.0
STDERR_LINES = 20  # the worker's last native stderr lines, told when it dies
MESSAGE_MAX = 1 << 20
ERRORS: dict[str, type[EdgeInferError]] = {"ModelError": ModelError, "RuntimeUnavailableError": RuntimeUnavailableError}


def signal_name(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


def layout(info: LoadedModel) -> tuple[int, int]:
    """The shared memory's two parts, in bytes: the input, then the scores (as the model's tensors hold them)."""
    input_bytes, output_bytes = (int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize
                                 for spec in (info.input, info.output))
    return input_bytes, output_bytes


def shared_views(memory: mmap.mmap, info: LoadedModel) -> tuple[np.ndarray, np.ndarray]:
    """The input ([height, width, 3]) and the scores ([classes]) in the shared memory, both processes alike."""
    spec_in, spec_out = info.input, info.output
    image = np.frombuffer(memory, spec_in.dtype, count=int(np.prod(spec_in.shape))).reshape(spec_in.shape)[0]
    scores = np.frombuffer(memory, spec_out.dtype, count=int(np.prod(spec_out.shape)),
                           offset=layout(info)[0]).reshape(spec_out.shape)[0]
    return image, scores


class WorkerProcess:
    """One started worker: its process, its socket, the reader of its stderr."""

    def __init__(self, config: ModelConfig, memory_fd: Callable[[int, int], int]) -> None:
        """`memory_fd(input bytes, score bytes)`: the shared memory's file descriptor, sized for the model."""
        self._socket, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edge_infer.pipeline.worker", str(theirs.fileno())], pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        finally:
            theirs.close()
        self.tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        # Not a method: the thread must not keep this object alive. A classifier dropped (its model switched)
        # closes its socket with it, and its worker, seeing the end of it, exits.
        self._reader = threading.Thread(target=read_stderr, args=(self.process.stderr, self.tail),
                                        name="worker-stderr", daemon=True)
        self._reader.start()
        try:
            self._socket.sendall(json.dumps(dataclasses.asdict(config)).encode())
            answer = self._receive(START_TIMEOUT_S)
            if answer is None:
                raise RuntimeUnavailableError(self.death())
            kind, payload = pickle.loads(answer)  # noqa: S301 - our own child, over our own socket pair
            if kind == "error":
                error_type, message = payload
                raise ERRORS.get(error_type, RuntimeUnavailableError)(message)
            self.info: LoadedModel = payload[0]
            self.cost: GraphCost = payload[1]
            fd = memory_fd(*layout(self.info))
            socket.send_fds(self._socket, [b"m"], [fd])
            if self._receive(START_TIMEOUT_S) != b"k":
                raise RuntimeUnavailableError(self.death())
        except BaseException:
            self.stop()
            raise

    def _receive(self, timeout: float) -> bytes | None:
        """The next message; None when the worker is gone (or, after `timeout`, killed as hung)."""
        self._socket.settimeout(timeout)
        try:
            data = self._socket.recv(MESSAGE_MAX)
        except TimeoutError:
            log.warning("the inference worker did not answer within %g s: stopping it", timeout)
            self.process.kill()
            return None
        except OSError:
            return None
        return data or None

    def invoke(self) -> bytes | None:
        try:
            self._socket.send(b"i")
        except OSError:
            return None
        return self._receive(INVOKE_TIMEOUT_S)

    def death(self) -> str:
        """How the worker ended, with its last stderr lines (it has closed its socket)."""
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(STOP_TIMEOUT_S)
        lines = [line for line in self.tail if line.strip()]
        said = f"; its last lines: {' | '.join(lines[-5:])}" if lines else ""
        return f"the inference worker ended ({signal_name(self.process.returncode)}){said}"

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self._socket.send(b"q")
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._socket.close()
        self._reader.join(STOP_TIMEOUT_S)
        if self.process.stderr is not None:
            self.process.stderr.close()


def read_stderr(stream: IO[bytes], tail: collections.deque[str]) -> None:
    """The worker's log lines ("LEVEL\tmessage") go to this process's log; native lines are kept in `tail` for
    its death notice, and logged at debug."""
    for raw in stream:
        line = raw.decode(errors="replace").rstrip("\n")
        level, tab, message = line.partition("\t")
        if tab and level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            log.log(getattr(logging, level), "%s", message)
        else:
            tail.append(line)
            log.debug("inference worker: %s", line)


class IsolatedClassifier(Classifier):
    """A Classifier whose interpreter lives in a worker process (see the module's docstring): the same methods,
    none of the base class's state."""

    def __init__(self, config: ModelConfig, clock: Callable[[], float] = time.monotonic) -> None:  # noqa: D107
        self._config = config
        self._clock = clock
        self._memory: tuple[int, mmap.mmap, tuple[int, int]] | None = None
        self._backoff = Backoff(FIRST_RESTART_S, LONGEST_RESTART_S)
        self._restart_at = 0.0
        self._worker: WorkerProcess | None = WorkerProcess(config, self._memory_fd)  # a failed start raises
        self.info = self._worker.info
        self._cost = self._worker.cost
        self._views()

    def _memory_fd(self, input_bytes: int, output_bytes: int) -> int:
        """Shared memory for the input and the scores: made once, handed to every worker started again."""
        if self._memory is None or self._memory[2] != (input_bytes, output_bytes):
            if self._memory is not None:
                self._release_memory()
            fd = os.memfd_create("edge-infer-inference", os.MFD_CLOEXEC)
            os.ftruncate(fd, input_bytes + output_bytes)
            self._memory = (fd, mmap.mmap(fd, input_bytes + output_bytes), (input_bytes, output_bytes))
        return self._memory[0]

    def _views(self) -> None:
        assert self._memory is not None
        self._input, self._output = shared_views(self._memory[1], self.info)

    def input_tensor(self) -> np.ndarray:
        return self._input

    def invoke(self) -> None:
        worker = self._worker
        if worker is None:
            worker = self._restart()
        answer = worker.invoke()
        if answer == b"k":
            return
        if answer is not None and answer[:1] == b"e":  # the interpreter's own failure: the worker lives on
            raise RuntimeUnavailableError(answer[1:].decode(errors="replace"))
        self._worker = None
        death = worker.death()
        worker.stop()
        self._restart_at = self._clock()  # at once, then with the backoff
        self._backoff.reset()
        log.error("%s: %s; starting it again", self.info.name, death)
        raise WorkerDown(f"{self.info.name}: {death}")

    def _restart(self) -> WorkerProcess:
        now = self._clock()
        if now < self._restart_at:
            raise WorkerDown(f"the inference worker of {self.info.name} starts again in {self._restart_at - now:.0f} s")
        try:
            worker = WorkerProcess(self._config, self._memory_fd)
        except EdgeInferError as exc:
            delay = self._backoff.next()
            self._restart_at = self._clock() + delay
            log.warning("the inference worker of %s cannot start (%s); trying again in %g s", self.info.name, exc,
                        delay)
            raise WorkerDown(str(exc)) from exc
        changed = worker.info.input != self.info.input or worker.info.output != self.info.output
        self.info = worker.info
        if changed:  # the same model file, so never; but a file replaced meanwhile must not be read wrongly
            self._views()
        self._worker = worker
        log.warning("the inference worker of %s runs again", self.info.name)
        return worker

    def cost(self) -> GraphCost:
        return self._cost

    def read_scores(self, out: np.ndarray) -> np.ndarray:
        return dequantize(self._output, self.info.output.scale, self.info.output.zero_point, out)

    @property
    def pid(self) -> int | None:
        return self._worker.process.pid if self._worker is not None else None

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        self._release_memory()

    def _release_memory(self) -> None:
        if self._memory is not None:
            fd, memory, _ = self._memory
            self._input = self._output = np.empty(0)  # no view may outlive the mapping
            with contextlib.suppress(BufferError):  # a view a caller still holds: the mapping goes with it
                memory.close()
            os.close(fd)
            self._memory = None


# --- the worker's side ----------------------------------------------------------------------------------------

def serve(fd: int) -> int:
    """The worker: load the model as the run would, then answer invokes until told to stop or the run is gone."""
    from .classifier import load_classifier

    logging.basicConfig(level=logging.DEBUG, format="%(levelname)s\t%(message)s", stream=sys.stderr)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run stops it (b"q"): a Ctrl-C reaches both processes
    connection = socket.socket(fileno=fd)
    fields = json.loads(connection.recv(MESSAGE_MAX))
    config = ModelConfig(**{**fields, "isolate": False})
    try:
        classifier = load_classifier(config)
    except EdgeInferError as exc:
        connection.send(pickle.dumps(("error", (type(exc).__name__, str(exc)))))
        return 1
    connection.send(pickle.dumps(("ready", (classifier.info, classifier.cost()))))
    _, fds, _, _ = socket.recv_fds(connection, 16, 1)
    shared_in, shared_out = shared_views(mmap.mmap(fds[0], sum(layout(classifier.info))), classifier.info)
    connection.send(b"k")
    while connection.recv(16) not in (b"", b"q"):
        np.copyto(classifier.input_tensor(), shared_in)
        try:
            classifier.invoke()
        except RuntimeUnavailableError as exc:
            connection.send(b"e" + str(exc).encode())
            continue
        np.copyto(shared_out, classifier.raw_scores())
        connection.send(b"k")
    return 0


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1])))
