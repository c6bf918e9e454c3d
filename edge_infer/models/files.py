"""Model files: where they live, how a name finds one, reading one, and writing one atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError

# Per user, then system-wide (where deploy.sh puts the service's models).
SYSTEM_MODEL_DIR = "/var/lib/edge-infer/models"
EDGETPU_OP = b"edgetpu-custom-op"
# A HEF (Hailo Executable Format) starts with HEADER_MAGIC 0x01484546, big-endian (hailo-ai/hailort
# libhailort/src/hef/hef_internal.hpp, read by hef.cpp parse_hef_header_before_distinct with BYTE_ORDER__htonl).
HEF_MAGIC = b"\x01HEF"
# Every TFLite flatbuffer carries the file identifier "TFL3" at byte offset 4 (tensorflow/lite/schema/schema.fbs,
# file_identifier).
TFLITE_ID = b"TFL3"
MODEL_SUFFIXES = (".tflite", ".hef")


def is_tflite(header: bytes) -> bool:
    """The first 8 bytes (or more) of a file are a TFLite flatbuffer's."""
    return header[4:8] == TFLITE_ID


def model_stem(name: str) -> str:
    """A model's name as the zoo, the results and the log give it: its file name without .tflite or .hef."""
    return name.removesuffix(".tflite").removesuffix(".hef")


IMX500_NETWORKS_DIR = "/usr/share/imx500-models"  # where Raspberry Pi's imx500-models package puts the AI Camera's


def user_model_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """$XDG_DATA_HOME/edge-infer/models, else ~/.local/share/edge-infer/models (the XDG base directory spec:
    a relative $XDG_DATA_HOME is to be ignored)."""
    data = environ.get("XDG_DATA_HOME", "")
    return (Path(data) if os.path.isabs(data) else Path.home() / ".local" / "share") / "edge-infer" / "models"


def model_dirs(configured: str | None) -> list[Path]:
    """Where a bare model name is looked up: the config's models_dir, $EDGE_INFER_MODELS, then defaults."""
    dirs = [configured, os.environ.get("EDGE_INFER_MODELS"), user_model_dir(), SYSTEM_MODEL_DIR]
    return [Path(d).expanduser() for d in dirs if d]


def pull_dir(explicit: str | None) -> Path:
    """Where `models pull` puts files: the one given, $EDGE_INFER_MODELS, else the user's or (as root) the system's."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("EDGE_INFER_MODELS"):
        return Path(os.environ["EDGE_INFER_MODELS"])
    return Path(SYSTEM_MODEL_DIR) if os.geteuid() == 0 else user_model_dir()


def resolve_model(name: str, models_dir: str | None) -> Path:
    """A path as given, or a name (with or without .tflite, or .hef for a Hailo model) found in the model
    directories."""
    given = Path(name).expanduser()
    if given.is_file():
        return given
    if given.is_absolute() or os.sep in name:
        raise ModelError(f"model file '{name}' does not exist")
    searched = model_dirs(models_dir)
    for directory in searched:
        for candidate in (directory / name, *(directory / f"{name}{suffix}" for suffix in MODEL_SUFFIXES)):
            if candidate.is_file():
                return candidate
    raise ModelError(f"model '{name}' not found in {', '.join(map(str, searched))}: "
                     "give a path, or set model.models_dir / EDGE_INFER_MODELS")


@dataclass(frozen=True)
class ModelFile:
    path: Path
    content: bytes

    @property
    def name(self) -> str:
        return model_stem(self.path.name)

    @property
    def needs_edgetpu(self) -> bool:
        """Compiled by edgetpu_compiler: the graph is one custom op only libedgetpu can run."""
        return EDGETPU_OP in self.content

    @property
    def cpu_twin(self) -> str:
        return self.name.replace("_edgetpu", "") + ".tflite"


def read_model(path: Path) -> ModelFile:
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model '{path}': {exc.strerror}") from exc
    if path.suffix == ".rpk":
        raise ModelError(f"'{path}' is an AI Camera network (.rpk), not a TFLite model: it runs on the Raspberry Pi AI "
                         "Camera's sensor with model.delegate: imx500")
    if content[:4] == HEF_MAGIC:
        raise ModelError(f"'{path}' is a Hailo model (HEF), not a TFLite model: it runs on a Hailo AI Kit or AI HAT+ "
                         "with model.delegate: hailo")
    if not is_tflite(content):
        raise ModelError(f"'{path}' is not a TFLite model (corrupt, truncated, or another format)")
    return ModelFile(path, content)


def read_hef(path: Path) -> ModelFile:
    """A HEF for the Hailo: its bytes, once they start as a HEF does (HailoRT parses the rest)."""
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model '{path}': {exc.strerror}") from exc
    if is_tflite(content):
        raise ModelError(f"'{path}' is a TFLite model: the Hailo runs HEF files compiled by Hailo's Dataflow Compiler "
                         "(edge-infer models list shows the Hailo Model Zoo's MobileNets), or set model.delegate: cpu")
    if content[:4] != HEF_MAGIC:
        raise ModelError(f"'{path}' is not a Hailo HEF (corrupt, truncated, or another format)")
    return ModelFile(path, content)


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` that replaces it when the block ends without an error.

    Readers (a service loading the model) see the old file or the complete new one, never a part;
    an error or a crash inside the block leaves `path` as it was and no temporary file behind.
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
        temp.chmod(0o644)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
