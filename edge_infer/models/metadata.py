"""A model's TFLite metadata (the zip of associated files appended to the flatbuffer) and its class
labels: read from that metadata or a text file, then lined up with the model's outputs."""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .files import ModelFile
from .zoo import redownload_hint

NUMBERED_LINE = re.compile(r"^\s*(\d+)[\s:]+(.*\S)\s*$")


def parse_labels(text: str) -> list[str]:
    """One label per line, or `<index> <label>` / `<index>: <label>` lines (Coral's format)."""
    lines = [line for line in text.splitlines() if line.strip()]
    numbered = [NUMBERED_LINE.match(line) for line in lines]
    if lines and all(numbered):
        by_index = {int(m.group(1)): m.group(2) for m in numbered if m}
        return [by_index.get(i, str(i)) for i in range(max(by_index) + 1)]
    return [line.strip() for line in lines]


METADATA_FILE = "edge_infer.json"  # what `edge-infer models build` packs beside the labels


END_OF_ARCHIVE = b"PK\x05\x06"  # a zip's end-of-central-directory record; 22 bytes and a comment


def packed_files(model: ModelFile) -> zipfile.ZipFile | None:
    """TFLite metadata appends a zip archive of associated files (labels, ...) to the flatbuffer.

    The archive is found from its end record, searched from the end of the file: bytes appended
    after the archive (a bad copy, a rotting SD card) must not hide it. The flatbuffer before it
    may hold the record's 4 bytes by chance, so a candidate that does not open is passed over.
    """
    content = model.content
    end = len(content)
    while (record := content.rfind(END_OF_ARCHIVE, 0, end)) >= 0:
        comment = int.from_bytes(content[record + 20: record + 22], "little")
        try:
            return zipfile.ZipFile(io.BytesIO(content[: record + 22 + comment]))
        except (zipfile.BadZipFile, EOFError, ValueError, OSError):
            end = record
    return None


def read_packed(model: ModelFile, archive: zipfile.ZipFile, name: str) -> bytes:
    """A packed file's bytes; a damaged one (a flipped bit fails its CRC) means the model file is damaged."""
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, NotImplementedError, KeyError) as exc:
        raise ModelError(f"'{model.path}' is damaged: the {name} packed in it cannot be read ({exc}); "
                         f"{redownload_hint(model.name)}") from exc


def with_metadata(model: bytes, labels: list[str], info: dict[str, Any]) -> bytes:
    """Append the associated-files archive the runtime reads: labels.txt and our build facts."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as files:
        files.writestr("labels.txt", "\n".join(labels) + "\n")
        files.writestr(METADATA_FILE, json.dumps(info, indent=2))
    return model + archive.getvalue()


def packed_info(model: ModelFile) -> dict[str, Any]:
    """The build facts a model carries (input normalization, arch, alpha, resolution), or {}."""
    archive = packed_files(model)
    if archive is None or METADATA_FILE not in archive.namelist():
        return {}
    try:
        info = json.loads(read_packed(model, archive, METADATA_FILE))
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def metadata_labels(model: ModelFile) -> list[str] | None:
    """Labels packed in the model, from the label file in its metadata archive."""
    archive = packed_files(model)
    if archive is None:
        return None
    names = [n for n in archive.namelist() if n.lower().endswith(".txt")]
    preferred = [n for n in names if "label" in n.lower()] or names
    if not preferred:
        return None
    return parse_labels(read_packed(model, archive, preferred[0]).decode("utf-8", errors="replace"))


def align_labels(labels: list[str], num_classes: int) -> tuple[str, ...] | None:
    """Labels indexed like the model's outputs, or None when they cannot belong to this model.

    ImageNet models come in two conventions: 1001 outputs with index 0 = "background" (the TF-Slim
    and Coral models) and 1000 outputs without it (Keras). A label list of the other convention is
    shifted by one instead of being silently off by one.
    """
    if len(labels) == num_classes:
        return tuple(labels)
    if len(labels) == num_classes + 1 and labels[0].strip().lower() in ("background", "???", "unused"):
        return tuple(labels[1:])
    if len(labels) + 1 == num_classes:
        return ("background", *labels)
    return None


def load_labels(model: ModelFile, labels_file: str | None, num_classes: int) -> tuple[tuple[str, ...], str]:
    """Labels for each output index and where they came from; a labels file beats the metadata."""
    if labels_file:
        try:
            labels, source = parse_labels(Path(labels_file).expanduser().read_text()), labels_file
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelError(f"cannot read labels file '{labels_file}': {exc}") from exc
    else:
        found = metadata_labels(model)
        if found is None:
            raise ModelError(f"'{model.path}' carries no labels in its metadata: set model.labels "
                             "(or --labels) to a labels file")
        labels, source = found, "model metadata"
    aligned = align_labels(labels, num_classes)
    if aligned is None:
        raise ModelError(f"{len(labels)} labels from {source} do not fit the {num_classes} outputs of '{model.path}'")
    return aligned, source
