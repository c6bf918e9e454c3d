"""Damaged model files, as an SD card that rots makes them: copies of the real models in ../shared,
mutated by the test. Each must load, or fail with a ModelError that says what to do (exit 3): never
an internal error, never a crash of the process that loads it."""

from __future__ import annotations

import contextlib
import io
import random
import zipfile
from pathlib import Path

import pytest
from conftest import error_lines

from edge_infer.errors import ModelError
from edge_infer.models import check
from edge_infer.models.files import read_model
from edge_infer.models.inspect import inspect_model
from edge_infer.models.metadata import metadata_labels
from edge_infer.pipeline.classifier import ModelConfig, load_classifier

SOURCE = "mobilenet_v1_0.25_128_quant"


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch):
    """Every test checks its models afresh: verdicts go to a directory of its own."""
    monkeypatch.setenv("EDGE_INFER_CACHE", str(tmp_path / "cache"))


def damaged_copy(models: Path, tmp_path: Path, name: str, change) -> Path:
    content = bytearray((models / f"{SOURCE}.tflite").read_bytes())
    change(content)
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(bytes(content))
    return path


def labels_member(content: bytes) -> tuple[int, int]:
    """(offset, size) of labels.txt's compressed bytes in the zip appended to the model."""
    start = content.find(b"PK\x03\x04")
    with zipfile.ZipFile(io.BytesIO(content[start:])) as z:
        info = z.getinfo(next(n for n in z.namelist() if n.endswith(".txt")))
    header = start + info.header_offset
    name_length = int.from_bytes(content[header + 26: header + 28], "little")
    extra_length = int.from_bytes(content[header + 28: header + 30], "little")
    return header + 30 + name_length + extra_length, info.compress_size


def test_a_flipped_bit_in_the_packed_labels_is_a_model_error(models: Path, tmp_path: Path, cli, images: Path):
    def flip(content: bytearray) -> None:
        offset, size = labels_member(bytes(content))
        content[offset + size // 2] ^= 0x10

    path = damaged_copy(models, tmp_path, "damaged_labels", flip)
    with pytest.raises(ModelError, match=r"is damaged: the imagenet_labels\.txt packed in it cannot be read \(Bad "
                                         r"CRC-32.*\); copy it again from where it came from"):
        metadata_labels(read_model(path))
    done = cli("run", "--model", str(path), "--source", str(images / "bird.bmp"))
    assert done.status == 3
    [line] = error_lines(done.stderr)
    assert "is damaged" in line and "Traceback" not in done.stderr


def test_bytes_appended_after_the_packed_labels_do_not_hide_them(models: Path, tmp_path: Path):
    path = damaged_copy(models, tmp_path, "appended", lambda c: c.extend(random.Random(3).randbytes(70_000)))
    labels = metadata_labels(read_model(path))
    assert labels is not None and len(labels) == 1001 and labels[89] == "macaw"


def test_a_zoo_model_that_is_not_the_published_file_is_refused(models: Path, tmp_path: Path, images: Path, cli):
    def flip_a_weight(content: bytearray) -> None:
        content[len(content) // 2] ^= 0x01  # the model still loads, and classifies a little differently

    path = damaged_copy(models, tmp_path, SOURCE, flip_a_weight)
    done = cli("run", "--model", str(path), "--source", str(images / "bird.bmp"))
    assert done.status == 3
    [line] = error_lines(done.stderr)
    assert f"is not the published {SOURCE}.tflite (its sha256 differs)" in line
    assert f"re-download it (edge-infer models pull {SOURCE})" in line


def test_the_check_runs_once_per_file_and_runtime(models: Path, tmp_path: Path, monkeypatch):
    children: list[Path] = []
    real = check.crash_in_child

    def counting(path: Path) -> str | None:
        children.append(path)
        return real(path)

    monkeypatch.setattr(check, "crash_in_child", counting)
    model = models / f"{SOURCE}.tflite"
    load_classifier(ModelConfig(path=str(model), num_threads=1))
    load_classifier(ModelConfig(path=str(model), num_threads=1))
    assert children == [model]  # the second start only hashes the file
    assert len(list((tmp_path / "cache" / "checked").iterdir())) == 1


# 2 kB zeroed here in mobilenet_v2_1.0_224_quant.tflite (sha256 7aad0c74..., as ../shared/models/SHA256SUMS
# lists it) make LiteRT 2.3.0 abort in allocate_tensors (SIGABRT), found by zeroing 2 kB blocks of the graph.
ABORTS_AT = 3553792


def test_a_model_that_aborts_the_interpreter_is_refused_without_crashing_us(models: Path, tmp_path: Path, cli,
                                                                             images: Path):
    content = bytearray((models / "mobilenet_v2_1.0_224_quant.tflite").read_bytes())
    content[ABORTS_AT:ABORTS_AT + 2048] = bytes(2048)
    path = tmp_path / "aborts.tflite"
    path.write_bytes(bytes(content))
    with pytest.raises(ModelError, match=r"model file '.*aborts.tflite' is corrupt \(the interpreter crashed "
                                         r"\(SIGABRT\) loading it\): copy it again from where it came from"):
        load_classifier(ModelConfig(path=str(path), num_threads=1))  # in this process: we are still here
    done = cli("run", "--model", str(path), "--source", str(images / "bird.bmp"))
    assert done.status == 3 and len(error_lines(done.stderr)) == 1 and "is corrupt" in done.stderr


def test_a_model_that_needs_more_memory_than_the_limit_is_refused(models: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(check, "CHECK_MEMORY_BYTES", 64 << 20)  # less than loading any model takes
    path = damaged_copy(models, tmp_path, "too_big", lambda content: None)
    with pytest.raises(ModelError, match=r"'.*too_big.tflite' is corrupt \(the interpreter "):
        load_classifier(ModelConfig(path=str(path), num_threads=1))


MUTATIONS = {
    "truncated": lambda c, r: c.__delitem__(slice(len(c) * 2 // 3, None)),
    "zeroed 2 kB": lambda c, r: c.__setitem__(slice(o := r.randrange(64, len(c) - 2048), o + 2048), bytes(2048)),
    "3 flipped bytes": lambda c, r: [c.__setitem__(o, c[o] ^ (1 << r.randrange(8)))
                                     for o in (r.randrange(len(c)) for _ in range(3))],
    "random tail": lambda c, r: c.extend(r.randbytes(r.randrange(1, 5000))),
    "zeroed header": lambda c, r: c.__setitem__(slice(0, 16), bytes(16)),
}


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
def test_mutated_models_load_or_fail_with_a_model_error(models: Path, tmp_path: Path, kind: str):
    rng = random.Random(kind)
    outcomes = []
    for copy in range(6):
        path = damaged_copy(models, tmp_path, f"mutant_{copy}", lambda c: MUTATIONS[kind](c, rng))
        try:  # in this process: a crash of the native code here would end the test run
            load_classifier(ModelConfig(path=str(path), num_threads=1))
            outcomes.append("loads")
        except ModelError as exc:
            assert "\n" not in str(exc)
            outcomes.append("model error")
        with contextlib.suppress(ModelError):
            inspect_model(path)
    assert len(outcomes) == 6
