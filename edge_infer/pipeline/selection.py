"""Which models a run uses, decided in one place.

`ModelSelection` owns the configured model, the accelerator's fallback, the thermal guard's ladder and
each region's own model: each is resolved and fetched once, at start (a missing fallback or ladder
model is found now, not when the Coral or the Hailo fails or the board is hot). It opens one interpreter per
distinct model file (a `ModelSlot`), shared by every camera and region that names it; the configured
model's slot is the one the thermal guard steps and the accelerator failover moves (the Edge TPU's or the
Hailo's: any model.delegate but cpu, with model.fallback_model set).
`load_classifier` loads exactly what it is asked for; falling back is decided here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from ..errors import ModelError, RuntimeUnavailableError
from ..models.files import read_model, resolve_model
from .classifier import ModelConfig, load_classifier
from .failover import Failover
from .imx500 import resolve_network
from .stages import ModelSlot

log = logging.getLogger(__name__)

FileKey = tuple[Path, int, int]  # a model file as it is now: path, modification time (ns), size


def file_key(path: Path) -> FileKey:
    try:
        status = path.stat()
    except OSError as exc:
        raise ModelError(f"cannot read model '{path}': {exc.strerror}") from exc
    return path, status.st_mtime_ns, status.st_size


Fetch = Callable[[str], None]  # pulls a zoo model that is not in the model directories yet; raises ModelError


class ModelSelection:
    def __init__(self, model: ModelConfig, *, ladder: Sequence[str] = (), regions: Iterable[tuple[str, str]] = (),
                 fetch: Fetch = lambda name: None) -> None:
        """`regions`: (where, model name) of each region that names its own model, `where` for its errors."""
        self.model = model
        self._ladder = tuple(ladder)
        self._regions = tuple(regions)
        self._fetch = fetch
        self._slots: dict[str | None, ModelSlot] = {}
        self._by_file: dict[FileKey, ModelSlot] = {}

    def open(self) -> dict[str | None, ModelSlot]:
        """The slots, keyed by the model name each region gives (None: model.path)."""
        model = self.model
        if model.delegate != "imx500":  # an AI Camera network comes with imx500-models, not from the zoo's URLs
            self._fetch(model.path)
        if model.delegate != "cpu" and model.fallback_model:
            try:
                self._fetch(model.fallback_model)
            except ModelError as exc:
                raise ModelError(f"model.fallback_model: {exc}") from exc
        for rung in self._ladder:
            try:
                self._fetch(rung)
            except ModelError as exc:  # the guard stays on what it has; a missing rung is logged, not fatal
                log.warning("thermal guard: %s", exc)
        configured = self._open_configured()
        self._slots = {None: configured}
        configured_file = (resolve_network(model.path, model.models_dir) if model.delegate == "imx500"
                           else resolve_model(model.path, model.models_dir))
        self._by_file = {file_key(configured_file): configured}
        for where, name in self._regions:
            try:
                self.slot_for(name)
            except ModelError as exc:
                raise ModelError(f"{where}.model: {exc}") from exc
        return dict(self._slots)

    def slot_for(self, name: str | None) -> ModelSlot:
        """The slot of a region's model (None: model.path), opened now if no region runs that file yet, or if
        the file changed since (a model taught again under the same name). After `open`; from one thread at a
        time (the run's start, then the config watch)."""
        if name is None:
            return self._slots[None]
        self._fetch(name)
        key = file_key(resolve_model(name, self.model.models_dir))
        if key not in self._by_file:
            self._by_file[key] = ModelSlot(load_classifier(self.region_model(key[0])))
        self._slots[name] = self._by_file[key]
        return self._slots[name]

    def keep(self, used: Iterable[ModelSlot]) -> None:
        """Drop the slots no region runs any more (their interpreters go with the last frame using them)."""
        kept = {id(slot) for slot in used} | {id(self._slots[None])}
        self._slots = {name: slot for name, slot in self._slots.items() if id(slot) in kept}
        self._by_file = {key: slot for key, slot in self._by_file.items() if id(slot) in kept}

    def region_model(self, path: Path) -> ModelConfig:
        """A region's own model runs where it was compiled for: an Edge TPU build on the Coral, a HEF on the Hailo,
        every other on the CPU; it has no fallback of its own to fail over to."""
        delegate = "cpu"
        if path.suffix == ".hef":
            delegate = "hailo"
        elif path.stem.endswith("_edgetpu") and self.model.delegate == "edgetpu":
            delegate = "edgetpu"
        return replace(self.model, path=str(path), delegate=delegate, fallback_model=None)

    def _open_configured(self) -> ModelSlot:
        """The configured model on its delegate; on an accelerator, the fallback when it cannot be used."""
        model = self.model
        fallback = self._fallback_config()
        try:
            classifier = load_classifier(model)
            lost_at_start = False
        except RuntimeUnavailableError as exc:  # no library, no device, or a library that cannot run the model
            if model.delegate == "cpu":
                raise
            if fallback is None:
                cpu_twin = (read_model(resolve_model(model.path, model.models_dir)).cpu_twin
                            if model.delegate == "edgetpu" else None)
                hint = f", or run the CPU model {cpu_twin} with delegate: cpu" if cpu_twin else ""
                raise RuntimeUnavailableError(f"{exc}; or set model.fallback_model{hint}") from exc
            log.warning("%s; falling back to %s on the CPU", exc, model.fallback_model)
            classifier = load_classifier(fallback)
            lost_at_start = True
        failover = None
        if model.delegate == "imx500":
            # The network is on the camera's sensor, which the camera's source was opened for: another network, or the
            # sensor coming back after a start on the fallback, waits for a restart.
            return ModelSlot(classifier, None, model.path if not lost_at_start else str(model.fallback_model))
        if fallback is not None:
            failover = Failover(lambda path: load_classifier(replace(model, path=path, fallback_model=None)),
                                lambda: load_classifier(fallback), str(model.fallback_model),
                                lost_at_start=lost_at_start, accelerator=model.delegate)
        return ModelSlot(classifier, lambda path: load_classifier(replace(model, path=path)), model.path, failover)

    def _fallback_config(self) -> ModelConfig | None:
        """With an accelerator (the Edge TPU, the Hailo) and a fallback model configured, the fallback on the CPU, with
        the same labels file when model.labels sets one (a HEF carries no labels; the zoo's CPU MobileNets carry the
        same 1001 ImageNet labels a HEF gets by default)."""
        model = self.model
        if model.delegate == "cpu" or not model.fallback_model:
            return None
        fallback = resolve_model(model.fallback_model, model.models_dir)
        return replace(model, path=str(fallback), delegate="cpu", fallback_model=None)
