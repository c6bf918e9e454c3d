"""The model zoo: every known MobileNet, where to get it, and what its authors published about it.

Published numbers (ImageNet top-1 %, million MACs, million parameters) are from the TensorFlow
model tables: tensorflow/models research/slim/nets/mobilenet_v1.md (V1, float and quantized) and
research/slim/nets/mobilenet/README.md (V2 1.0_224: 300 M MACs, 3.47 M parameters, 71.8 %); the
V2 quantized top-1 (70.8 %) is from the TensorFlow Lite hosted-models table. The TF2 int8 builds
are not in those tables; Coral lists each at the same top-1 as its TF1 uint8 sibling (coral.ai/models/all,
as copied in ricardodeazambuja/EdgeTPUModelZoo and the first AxisCommunications/axis-model-zoo
README: V2 73.2 % both, V1 1.0_224 69.5 % both), and Axis measured the V2 pair on its Edge TPU
camera at 69.6 % (TF2) and 68.9 % (TF1): so each TF2 build carries its TF1 sibling's number here,
on the same scale as the rest of the table.
Files from google-coral/test_data carry their labels in TFLite metadata and have a known sha256;
the TensorFlow .tgz archives are verified by the sha256 of the .tflite inside where it is known.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass

TF_V1_QUANT = "https://storage.googleapis.com/download.tensorflow.org/models/mobilenet_v1_2018_08_02"
TF_V1_FLOAT = "https://storage.googleapis.com/download.tensorflow.org/models/mobilenet_v1_2018_02_22"
TF_V2 = "https://storage.googleapis.com/download.tensorflow.org/models/tflite_11_05_08"
CORAL = "https://github.com/google-coral/test_data/raw/master"
# The fastest MobileNet of the best published top-1 on a CPU (the README's bench table: the same V2
# as mobilenet_v2_1.0_224_quant, whose top-1 Coral lists as equal, at about half the invoke time).
DEFAULT_MODEL = "tf2_mobilenet_v2_1.0_224_ptq"


@dataclass(frozen=True)
class ModelEntry:
    name: str  # the file is <name>.tflite
    arch: str  # mobilenet_v1 / mobilenet_v2
    alpha: float  # width multiplier
    resolution: int  # input side; 224 * rho
    input_type: str  # uint8 / float32
    url: str
    member: str | None  # the .tflite inside a .tgz, None for a plain file
    sha256: str | None  # of the .tflite file, where known
    top1: float | None  # published ImageNet top-1 %, float or quantized as the entry is
    macs_m: float  # published million multiply-accumulates
    params_m: float  # published million parameters
    edgetpu: bool = False

    @property
    def file_name(self) -> str:
        return f"{self.name}.tflite"

    def published(self, digest: str) -> bool | None:
        """Whether a file with sha256 `digest` is this entry's published file; None where no sha256 is known.
        The one check of a file against the zoo: the load-time check, pull and doctor all ask here."""
        return None if self.sha256 is None else digest == self.sha256


# MobileNet V1: (alpha, resolution) -> (million MACs, million params, top-1 float, top-1 quant).
V1_TABLE = {
    (1.0, 224): (569, 4.24, 70.9, 69.7), (1.0, 192): (418, 4.24, 70.0, 69.0),
    (1.0, 160): (291, 4.24, 68.0, 67.3), (1.0, 128): (186, 4.24, 65.2, 64.0),
    (0.75, 224): (317, 2.59, 68.4, 67.9), (0.75, 192): (233, 2.59, 67.2, 66.2),
    (0.75, 160): (162, 2.59, 65.3, 63.9), (0.75, 128): (104, 2.59, 62.1, 59.8),
    (0.5, 224): (150, 1.34, 63.3, 62.2), (0.5, 192): (110, 1.34, 61.7, 60.4),
    (0.5, 160): (77, 1.34, 59.1, 57.7), (0.5, 128): (49, 1.34, 56.3, 54.9),
    (0.25, 224): (41, 0.47, 49.8, 48.2), (0.25, 192): (34, 0.47, 47.7, 45.8),
    (0.25, 160): (21, 0.47, 45.5, 43.5), (0.25, 128): (14, 0.47, 41.5, 39.9),
}

# sha256 of the Coral test_data files (the same bytes as ../shared/models).
CORAL_SHA256 = {
    "mobilenet_v1_0.25_128_quant": "cb273c23ee76374b05b9583177e28aa19744858a7679c56a250e83d0333da785",
    "mobilenet_v1_0.5_160_quant": "3cc6d2ca460abd2e0f699a6d0d2550c6b61c6e3b0e27a3616e384ea74cb86f43",
    "mobilenet_v1_0.75_192_quant": "41daeb22fdcf947e0e5ec32373aa9df7c31f3ef45dbd0ef7b5940fbce3c20f6a",
    "mobilenet_v2_1.0_224_quant": "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776",
    "tf2_mobilenet_v2_1.0_224_ptq": "5d3137241276e79c86d14a74fe43581398ae0e815191d3dba45495b810840e8c",
    "mobilenet_v1_0.25_128_quant_edgetpu": "a4cb1e493346542248687939fbd7421ab92d74c58b1f0a0018b8f1bdddfcef7e",
    "mobilenet_v1_0.5_160_quant_edgetpu": "e8fc376452b2134637da71016e3d22a6013550bf40d032854c2cb5699da7c16e",
    "mobilenet_v1_0.75_192_quant_edgetpu": "ead897a0aa6d184fc1b4149e85aede5c2eb4b4c5644424c71c651f19f5761b33",
}


def alpha_text(alpha: float) -> str:
    return {1.0: "1.0", 0.75: "0.75", 0.5: "0.5", 0.25: "0.25"}[alpha]


@functools.cache
def build_manifest() -> tuple[ModelEntry, ...]:
    entries = []
    for (alpha, resolution), (macs, params, top1_float, top1_quant) in V1_TABLE.items():
        stem = f"mobilenet_v1_{alpha_text(alpha)}_{resolution}"
        quant = f"{stem}_quant"
        if quant in CORAL_SHA256:  # the Coral copy carries labels in its metadata
            entries.append(ModelEntry(quant, "mobilenet_v1", alpha, resolution, "uint8", f"{CORAL}/{quant}.tflite",
                                      None, CORAL_SHA256[quant], top1_quant, macs, params))
        else:
            entries.append(ModelEntry(quant, "mobilenet_v1", alpha, resolution, "uint8", f"{TF_V1_QUANT}/{quant}.tgz",
                                      f"{quant}.tflite", None, top1_quant, macs, params))
        entries.append(ModelEntry(stem, "mobilenet_v1", alpha, resolution, "float32", f"{TF_V1_FLOAT}/{stem}.tgz",
                                  f"{stem}.tflite", None, top1_float, macs, params))
        if f"{quant}_edgetpu" in CORAL_SHA256 or (alpha, resolution) == (1.0, 224):
            edgetpu = f"{quant}_edgetpu"
            entries.append(ModelEntry(edgetpu, "mobilenet_v1", alpha, resolution, "uint8",
                                      f"{CORAL}/{edgetpu}.tflite", None, CORAL_SHA256.get(edgetpu), top1_quant,
                                      macs, params, edgetpu=True))
    entries += [
        ModelEntry("mobilenet_v2_1.0_224_quant", "mobilenet_v2", 1.0, 224, "uint8",
                   f"{CORAL}/mobilenet_v2_1.0_224_quant.tflite", None, CORAL_SHA256["mobilenet_v2_1.0_224_quant"],
                   70.8, 300, 3.47),
        ModelEntry("mobilenet_v2_1.0_224", "mobilenet_v2", 1.0, 224, "float32", f"{TF_V2}/mobilenet_v2_1.0_224.tgz",
                   "mobilenet_v2_1.0_224.tflite", None, 71.8, 300, 3.47),
        # TF2 post-training quantization: int8 inside (per-channel weights), uint8 at both ends. XNNPACK
        # runs it about twice as fast as the TF1 uint8 build, at the same published top-1: the default model.
        ModelEntry("tf2_mobilenet_v2_1.0_224_ptq", "mobilenet_v2", 1.0, 224, "uint8",
                   f"{CORAL}/tf2_mobilenet_v2_1.0_224_ptq.tflite", None, CORAL_SHA256["tf2_mobilenet_v2_1.0_224_ptq"],
                   70.8, 300, 3.47),
        ModelEntry("mobilenet_v2_1.0_224_quant_edgetpu", "mobilenet_v2", 1.0, 224, "uint8",
                   f"{CORAL}/mobilenet_v2_1.0_224_quant_edgetpu.tflite", None, None, 70.8, 300, 3.47, edgetpu=True),
        ModelEntry("tf2_mobilenet_v2_1.0_224_ptq_edgetpu", "mobilenet_v2", 1.0, 224, "uint8",
                   f"{CORAL}/tf2_mobilenet_v2_1.0_224_ptq_edgetpu.tflite", None, None, 70.8, 300, 3.47, edgetpu=True),
        ModelEntry("tf2_mobilenet_v1_1.0_224_ptq", "mobilenet_v1", 1.0, 224, "uint8",
                   f"{CORAL}/tf2_mobilenet_v1_1.0_224_ptq.tflite", None, None, V1_TABLE[(1.0, 224)][3], 569, 4.24),
        ModelEntry("tf2_mobilenet_v1_1.0_224_ptq_edgetpu", "mobilenet_v1", 1.0, 224, "uint8",
                   f"{CORAL}/tf2_mobilenet_v1_1.0_224_ptq_edgetpu.tflite", None, None, V1_TABLE[(1.0, 224)][3], 569,
                   4.24, edgetpu=True),
    ]
    return tuple(entries)


def find_entry(manifest: tuple[ModelEntry, ...], name: str) -> ModelEntry | None:
    name = name.removesuffix(".tflite")
    return next((entry for entry in manifest if entry.name == name), None)


def close_matches(manifest: tuple[ModelEntry, ...], name: str) -> list[str]:
    return difflib.get_close_matches(name.removesuffix(".tflite"), [e.name for e in manifest], n=4, cutoff=0.6)


def redownload_hint(name: str) -> str:
    """How to get a good copy of a damaged model file back."""
    if find_entry(build_manifest(), name) is not None:
        return f"re-download it (edge-infer models pull {name.removesuffix('.tflite')})"
    return "copy it again from where it came from"
