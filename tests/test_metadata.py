from pathlib import Path

import pytest

from edge_infer.errors import ModelError
from edge_infer.models.files import read_model, resolve_model
from edge_infer.models.metadata import align_labels, metadata_labels, parse_labels

CLASSIFIERS = ["mobilenet_v1_0.25_128_quant", "mobilenet_v1_0.5_160_quant", "mobilenet_v1_0.75_192_quant",
               "mobilenet_v2_1.0_224_quant", "tf2_mobilenet_v2_1.0_224_ptq"]


def test_parse_plain_labels():
    assert parse_labels("background\ntench\n\ngoldfish\n") == ["background", "tench", "goldfish"]


def test_parse_numbered_labels_in_coral_format():
    assert parse_labels("0  background\n1  tench\n3: great white shark\n") == [
        "background", "tench", "2", "great white shark"]


def test_labels_with_background_fit_a_1000_class_model():
    labels = ["background"] + [f"c{i}" for i in range(1000)]
    assert align_labels(labels, 1000)[0] == "c0"


def test_labels_without_background_fit_a_1001_class_model():
    labels = [f"c{i}" for i in range(1000)]
    aligned = align_labels(labels, 1001)
    assert aligned[0] == "background" and aligned[1] == "c0" and len(aligned) == 1001


def test_labels_that_do_not_fit_are_refused():
    assert align_labels(["a", "b", "c"], 10) is None


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_metadata_labels_of_the_shared_models(models: Path, name: str):
    labels = metadata_labels(read_model(models / f"{name}.tflite"))
    assert labels is not None and len(labels) == 1001
    assert labels[0] == "background" and labels[89] == "macaw"


def test_a_model_without_metadata_has_no_labels(models: Path):
    assert metadata_labels(read_model(models / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")) is None


def test_model_name_resolves_in_models_dir(models: Path):
    assert resolve_model("mobilenet_v1_0.25_128_quant", str(models)) == models / "mobilenet_v1_0.25_128_quant.tflite"


def test_model_name_resolves_through_the_environment(models: Path, monkeypatch):
    monkeypatch.setenv("EDGE_INFER_MODELS", str(models))
    assert resolve_model("mobilenet_v2_1.0_224_quant.tflite", None).is_file()


def test_unknown_model_name_lists_where_it_looked(tmp_path: Path):
    with pytest.raises(ModelError, match=f"not found in {tmp_path}"):
        resolve_model("no_such_model", str(tmp_path))


def test_edgetpu_models_are_recognised(models: Path):
    assert read_model(models / "mobilenet_v1_0.5_160_quant_edgetpu.tflite").needs_edgetpu
    assert not read_model(models / "mobilenet_v1_0.5_160_quant.tflite").needs_edgetpu


def test_a_file_that_is_not_tflite_is_refused(tmp_path: Path):
    (tmp_path / "model.tflite").write_bytes(b"PK\x03\x04 this is a zip, not a model")
    with pytest.raises(ModelError, match="is not a TFLite model"):
        read_model(tmp_path / "model.tflite")
