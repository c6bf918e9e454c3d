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
Files from google-coral/test_data carry their labels in TFLite metadata.

Every entry is checked against a hash its publisher or an upstream manifest states (pull.py):
- the sha256 of the .tflite, where it is known: the Coral files below 4 MiB (CORAL_SHA256) and the V2
  float .tflite inside its archive (V2_FLOAT_SHA256);
- else the git blob id of the .tflite in the publisher's repository (the larger Coral files,
  CORAL_GIT_BLOB): the content hash GitHub serves them by;
- else the sha256 of the TensorFlow .tgz archive (TF_ARCHIVE_SHA256): that is what is downloaded, and
  the .tflite inside has no published sha256. From a mirror, which serves the bare .tflite, these
  files have nothing to be checked against: pull.py asks for https (or a local directory), a TFLite
  model that the interpreter loads, and records the sha256 for every later use.
Where each hash comes from is said beside it.

The AI Camera's entry (IMX500_MOBILENET_V2) is an .rpk for the IMX500's sensor, pinned by its git blob id; apt's
imx500-models brings it too.

The Hailo entries (HAILO_ZOO) are HEFs, not TFLite: the Hailo Model Zoo's MobileNets compiled for the Hailo-8 and the
Hailo-8L. Hailo publishes no hash of its HEFs (its tables link bare https URLs on S3), so they are pulled as the
unpinned entries are: over https only, the file must begin as a HEF does, and the sha256 recorded at download
guards it from then on.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass

from .files import model_stem

TF_V1_QUANT = "https://storage.googleapis.com/download.tensorflow.org/models/mobilenet_v1_2018_08_02"
TF_V1_FLOAT = "https://storage.googleapis.com/download.tensorflow.org/models/mobilenet_v1_2018_02_22"
TF_V2 = "https://storage.googleapis.com/download.tensorflow.org/models/tflite_11_05_08"
CORAL = "https://github.com/google-coral/test_data/raw/master"
HAILO = "https://hailo-model-zoo.s3.eu-west-2.amazonaws.com/ModelZoo/Compiled/v2.18.0"
# The fastest MobileNet of the best published top-1 on a CPU (the README's bench table: the same V2
# as mobilenet_v2_1.0_224_quant, whose top-1 Coral lists as equal, at about half the invoke time).
DEFAULT_MODEL = "tf2_mobilenet_v2_1.0_224_ptq"
# Size caps: the biggest .tflite in the zoo is mobilenet_v1_1.0_224 (float, 16.9 MB), the biggest
# archive its .tgz (94 MB: checkpoints and frozen graphs beside the .tflite). A download or a member
# over its cap is refused before it fills a disk; an entry can carry its own caps.
MAX_MODEL_BYTES = 64 << 20
MAX_ARCHIVE_BYTES = 256 << 20


@dataclass(frozen=True)
class ModelEntry:
    name: str  # the file is <name>.tflite (<name>.hef for a Hailo entry)
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
    archive_sha256: str | None = None  # of the .tgz at `url`, where known
    git_blob: str | None = None  # the .tflite's git object id in the publisher's repository, where known
    max_bytes: int = MAX_MODEL_BYTES  # the .tflite
    max_archive_bytes: int = MAX_ARCHIVE_BYTES  # the .tgz at `url`
    hailo: str | None = None  # the chip a HEF is compiled for ("hailo8", "hailo8l"); None: a TFLite model
    fps: float | None = None  # published frames per second on that chip (batch size 1)
    imx500: bool = False  # an .rpk for the AI Camera's sensor

    @property
    def file_name(self) -> str:
        return f"{self.name}.hef" if self.hailo else f"{self.name}.rpk" if self.imx500 else f"{self.name}.tflite"

    @property
    def kind(self) -> str:
        """What runs it: the input type for the CPU, else the accelerator (edgetpu, hailo8, hailo8l, imx500)."""
        return self.hailo or ("edgetpu" if self.edgetpu else "imx500" if self.imx500 else self.input_type)

    def published(self, digest: str) -> bool | None:
        """Whether a file with sha256 `digest` is this entry's published file; None where no sha256 is known.
        The one check of a file against the zoo: the load-time check, pull and doctor all ask here."""
        return None if self.sha256 is None else digest == self.sha256

    def pinned(self, from_archive: bool) -> bool:
        """Whether a download has a publisher's hash to be checked against: the .tflite's sha256 or git blob id,
        or (for the .tgz itself, not a mirror's bare .tflite) the archive's sha256."""
        return bool(self.sha256 or self.git_blob or (from_archive and self.archive_sha256))


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

# sha256 of the Coral test_data files (the same bytes as ../shared/models, whose git blob ids are the ones in
# google-coral/test_data's tree at 104342d2d348).
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

# The Coral files of 4 MiB and more, by their git blob id in google-coral/test_data's tree (commit
# 104342d2d3480b3e66203073dac24f4e2dbb4c41, 2021-07-26, the newest we could read; CORAL serves its master):
# the publisher's own content hash; no sha256 of these is published anywhere we found.
CORAL_GIT_BLOB = {
    "mobilenet_v1_1.0_224_quant_edgetpu": "9b78e04db00702d2995b65a05b872e981e0041a9",
    "mobilenet_v2_1.0_224_quant_edgetpu": "06db28d38a42505b1ef4f19b5273173e9a43504c",
    "tf2_mobilenet_v2_1.0_224_ptq_edgetpu": "a79892384d1b48168eb77664a0138cfbd8557753",
    "tf2_mobilenet_v1_1.0_224_ptq": "333f1af94dd03e383d4cccd4b1341d5d4000b664",
    "tf2_mobilenet_v1_1.0_224_ptq_edgetpu": "4201aff3e46b12a1c3ab75b2e8f99e02ec79f40d",
}

# sha256 of TensorFlow's V1 .tgz archives at exactly the URLs below, as pinned by the Yocto recipe
# renesas-rz/meta-renesas-ai recipes-benchmark/models/models-tensorflow-lite.bb (SRC_URI[...sha256sum], which
# the build checks on every fetch). Cross-checked where others pin the same file: TensorFlow's own
# tensorflow/workspace2.bzl (tflite_mobilenet_quant: 1.0_224_quant) and STMicroelectronics' X-LINUX-AI recipes
# (0.5_128_quant, 0.5_128). The TFLite .tflite inside has no published sha256.
TF_ARCHIVE_SHA256 = {
    "mobilenet_v1_1.0_224": "1ccb74dbd9c5f7aea879120614e91617db9534bdfaa53dfea54b7c14162e126b",
    "mobilenet_v1_1.0_192": "ad683fb270cd1b0f49c820c4acf5fcbbfa546ae354b1345a4fff5f19f99d7c44",
    "mobilenet_v1_1.0_160": "1f612ebeda0e7e149897273c445b790ca8924a8a1488e6a61d36166a562fd89c",
    "mobilenet_v1_1.0_128": "d16f3102c1cb087eacf94c6a5abf0477767158fb891b2710409472bca4d988a8",
    "mobilenet_v1_0.75_224": "bf61b3ce7ca2d045bb35fa6ab9a68732e3531291266db4a8c7715227d7425657",
    "mobilenet_v1_0.75_192": "3d91d279cd06c055500aabdff8dfbd51a63797c7bb6b3f9a39e243f7c13997e9",
    "mobilenet_v1_0.75_160": "90b3f26406a89df489373358aa89d9db7bcb66d2400160f16f3687f79e4f66b2",
    "mobilenet_v1_0.75_128": "54a28065f6f230d0b71cf8fbbc50bbb89b4fdfada8e7e2a622da68b971d5ab97",
    "mobilenet_v1_0.5_224": "0eb9be8d18dcf9466a2a2d2157e71c83cd70dc168255d76d72bfe965318db725",
    "mobilenet_v1_0.5_192": "57c81cc48349d1079377f8cdeed3f017500aeb98a12f16c6ed2086a50848ecb6",
    "mobilenet_v1_0.5_160": "fb01b76ca1fb053e5f98d297e21c6c53d0d9f6a8b02ad2e88ac22b33b2adf729",
    "mobilenet_v1_0.5_128": "5a0def0d844327526385b110cdcaa6428d0828ff6d07515ef25bf3976e049d88",
    "mobilenet_v1_0.25_224": "eee166d4d1de004e2ee5de19a4f5045574d764ef59569dc284545f805a295074",
    "mobilenet_v1_0.25_192": "4889d7afabc31011f5218f6111532947ff7d5b6b9368afe1f152c67c6f30ea73",
    "mobilenet_v1_0.25_160": "8eb4540af0227e5e59849c41ca6da6f07e257cca887ec0f8cd33aeb46f1405cf",
    "mobilenet_v1_0.25_128": "34c52de7562259f66399993ef5ea222cc625d2e6f6f886a01fdc6cc99a0c7ee6",
    "mobilenet_v1_1.0_224_quant": "d32432d28673a936b2d6281ab0600c71cf7226dfe4cdcef3012555f691744166",
    "mobilenet_v1_1.0_192_quant": "b87b20c784e756fb52e265cc31fbea5b3236c9a001205bc24ed27985875b4559",
    "mobilenet_v1_1.0_160_quant": "b5c9da0d5215a1c1faab313f88ba0a900ac199c7af45f559ab65c63b0649bee1",
    "mobilenet_v1_1.0_128_quant": "29aec24c721329b83ff667195431ff9151362ba1854dfc8852d03aef5ac40def",
    "mobilenet_v1_0.75_224_quant": "6c40604a53edb295e6fd72ead340759db63a2e4d930593610f4d09efe17aa9b7",
    "mobilenet_v1_0.75_160_quant": "ed023a21c1fbb062a4777056f79910aab6137c9a83655317020faed6ad0ca738",
    "mobilenet_v1_0.75_128_quant": "14cd0b9c5cde26272c68ecc50de054979663e28fb1fd0348166d408a8b45538f",
    "mobilenet_v1_0.5_224_quant": "f61c28ab322a3ef441341431d33732ef79dfbf03ebc00769c12e5843573b2e9c",
    "mobilenet_v1_0.5_192_quant": "b3b7aca2599c9a09f7ebeb3f624fc51bc4897b9356950b67a5f11c65666dab3d",
    "mobilenet_v1_0.5_128_quant": "0a5b18571d3df4d85a5ac6cb5be829d141dd5855243ea04422ca7d19f730a506",
    "mobilenet_v1_0.25_224_quant": "be8131a23c93a83d7d0b1875ac34aa2e06319aef377f89dc6be2e8f10a0589ca",
    "mobilenet_v1_0.25_192_quant": "33f4ca5c5c7fb70f81a23ec06a884482ddcf5d26e32e4211781e110afb7a0877",
    "mobilenet_v1_0.25_160_quant": "8aba0b905df472d994c1d923efa743c7dfe182df579e0440b8e78c8f714ddc98",
}

# sha256 of mobilenet_v2_1.0_224.tflite inside TF_V2's .tgz (13,978,596 bytes): pinned by MediaPipe's
# third_party/external_files.bzl (google-ai-edge/mediapipe) for its mobilenet_v2_1.0_224_without_metadata.tflite,
# and by several projects that extract this very member from this .tgz. No sha256 of the .tgz is published
# by an upstream manifest we found.
V2_FLOAT_SHA256 = "9f3bc29e38e90842a852bfed957dbf5e36f2d97a91dd17736b1e5c0aca8d3303"


# The Hailo Model Zoo's MobileNets for the Hailo-8 and Hailo-8L, from its tables at tag v2.18 (2026-03-02, the
# branch for those chips, compiled with Dataflow Compiler 3.33.0 for HailoRT 4.23.0: hailo-ai/hailo_model_zoo
# docs/public_models/HAILO8/HAILO8_classification.rst and HAILO8L/HAILO8L_classification.rst, README.rst's badges):
# network -> (arch, alpha, its "Hardware Accuracy (top1)" %, "OPS (G)", "Params (M)"), and per chip its
# "FPS (Batch Size=1)". MACs are half the published OPS (a multiply-accumulate is two operations): 570 M for V1,
# against TensorFlow's 569 M. Every network takes 224x224x3 uint8 RGB with the normalization inside
# (cfg/base/mobilenet.yaml, normalize_in_net) and has 1001 outputs, background first (evaluation labels_offset: 1).
HAILO_NETWORKS = {
    "mobilenet_v1": ("mobilenet_v1", 1.0, 70.3, 1.14, 4.22),
    "mobilenet_v2_1.0": ("mobilenet_v2", 1.0, 70.9, 0.62, 3.49),
    "mobilenet_v2_1.4": ("mobilenet_v2", 1.4, 73.3, 1.18, 6.09),
}
HAILO_FPS = {
    "hailo8": {"mobilenet_v1": 3305, "mobilenet_v2_1.0": 2597, "mobilenet_v2_1.4": 1652},
    "hailo8l": {"mobilenet_v1": 2565, "mobilenet_v2_1.0": 1738, "mobilenet_v2_1.4": 1098},
}


def hailo_entries() -> list[ModelEntry]:
    """<arch>_<alpha>_224_<chip>, e.g. mobilenet_v2_1.0_224_hailo8l.hef: the Hailo Model Zoo's HEF for that chip."""
    entries = []
    for chip, fps in HAILO_FPS.items():
        for network, (arch, alpha, top1, ops_g, params) in HAILO_NETWORKS.items():
            entries.append(ModelEntry(f"{arch}_{alpha_text(alpha)}_224_{chip}", arch, alpha, 224, "uint8",
                                      f"{HAILO}/{chip}/{network}.hef", None, None, top1, round(ops_g * 1000 / 2),
                                      params, hailo=chip, fps=fps[network]))
    return entries


# The AI Camera's MobileNet: Raspberry Pi's imx500-models (the apt package of the same name installs it into
# /usr/share/imx500-models), at ddfe4c7: its README's table gives 71.572 % top-1 quantized (71.3 float) at 224x224;
# the file is 4,079,808 bytes with the git blob id below (the repository's tree). The network is Keras' MobileNetV2
# 1.0 (the README's Model Zoo link: Sony's model_optimization tutorials), TensorFlow's 300 M MACs and 3.47 M params.
IMX500_MOBILENET_V2 = ModelEntry(
    "imx500_network_mobilenet_v2", "mobilenet_v2", 1.0, 224, "uint8",
    "https://github.com/raspberrypi/imx500-models/raw/main/imx500_network_mobilenet_v2.rpk", None, None, 71.6, 300,
    3.47, git_blob="2fcd03f04c2dfb087d14b64fe8f7ec6ac81b87da", imx500=True)


def alpha_text(alpha: float) -> str:
    return {1.4: "1.4", 1.0: "1.0", 0.75: "0.75", 0.5: "0.5", 0.25: "0.25"}[alpha]


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
                                      f"{quant}.tflite", None, top1_quant, macs, params,
                                      archive_sha256=TF_ARCHIVE_SHA256[quant]))
        entries.append(ModelEntry(stem, "mobilenet_v1", alpha, resolution, "float32", f"{TF_V1_FLOAT}/{stem}.tgz",
                                  f"{stem}.tflite", None, top1_float, macs, params,
                                  archive_sha256=TF_ARCHIVE_SHA256[stem]))
        if f"{quant}_edgetpu" in CORAL_SHA256 or f"{quant}_edgetpu" in CORAL_GIT_BLOB:
            edgetpu = f"{quant}_edgetpu"
            entries.append(ModelEntry(edgetpu, "mobilenet_v1", alpha, resolution, "uint8",
                                      f"{CORAL}/{edgetpu}.tflite", None, CORAL_SHA256.get(edgetpu), top1_quant,
                                      macs, params, edgetpu=True, git_blob=CORAL_GIT_BLOB.get(edgetpu)))
    entries += [
        ModelEntry("mobilenet_v2_1.0_224_quant", "mobilenet_v2", 1.0, 224, "uint8",
                   f"{CORAL}/mobilenet_v2_1.0_224_quant.tflite", None, CORAL_SHA256["mobilenet_v2_1.0_224_quant"],
                   70.8, 300, 3.47),
        ModelEntry("mobilenet_v2_1.0_224", "mobilenet_v2", 1.0, 224, "float32", f"{TF_V2}/mobilenet_v2_1.0_224.tgz",
                   "mobilenet_v2_1.0_224.tflite", V2_FLOAT_SHA256, 71.8, 300, 3.47),
        # TF2 post-training quantization: int8 inside (per-channel weights), uint8 at both ends. XNNPACK
        # runs it about twice as fast as the TF1 uint8 build, at the same published top-1: the default model.
        ModelEntry("tf2_mobilenet_v2_1.0_224_ptq", "mobilenet_v2", 1.0, 224, "uint8",
                   f"{CORAL}/tf2_mobilenet_v2_1.0_224_ptq.tflite", None, CORAL_SHA256["tf2_mobilenet_v2_1.0_224_ptq"],
                   70.8, 300, 3.47),
        ModelEntry("mobilenet_v2_1.0_224_quant_edgetpu", "mobilenet_v2", 1.0, 224, "uint8",
                   f"{CORAL}/mobilenet_v2_1.0_224_quant_edgetpu.tflite", None, None, 70.8, 300, 3.47, edgetpu=True,
                   git_blob=CORAL_GIT_BLOB["mobilenet_v2_1.0_224_quant_edgetpu"]),
        ModelEntry("tf2_mobilenet_v2_1.0_224_ptq_edgetpu", "mobilenet_v2", 1.0, 224, "uint8",
                   f"{CORAL}/tf2_mobilenet_v2_1.0_224_ptq_edgetpu.tflite", None, None, 70.8, 300, 3.47, edgetpu=True,
                   git_blob=CORAL_GIT_BLOB["tf2_mobilenet_v2_1.0_224_ptq_edgetpu"]),
        ModelEntry("tf2_mobilenet_v1_1.0_224_ptq", "mobilenet_v1", 1.0, 224, "uint8",
                   f"{CORAL}/tf2_mobilenet_v1_1.0_224_ptq.tflite", None, None, V1_TABLE[(1.0, 224)][3], 569, 4.24,
                   git_blob=CORAL_GIT_BLOB["tf2_mobilenet_v1_1.0_224_ptq"]),
        ModelEntry("tf2_mobilenet_v1_1.0_224_ptq_edgetpu", "mobilenet_v1", 1.0, 224, "uint8",
                   f"{CORAL}/tf2_mobilenet_v1_1.0_224_ptq_edgetpu.tflite", None, None, V1_TABLE[(1.0, 224)][3], 569,
                   4.24, edgetpu=True, git_blob=CORAL_GIT_BLOB["tf2_mobilenet_v1_1.0_224_ptq_edgetpu"]),
    ]
    return tuple(entries + hailo_entries() + [IMX500_MOBILENET_V2])


def find_entry(manifest: tuple[ModelEntry, ...], name: str) -> ModelEntry | None:
    name = model_stem(name).removesuffix(".rpk")
    return next((entry for entry in manifest if entry.name == name), None)


def close_matches(manifest: tuple[ModelEntry, ...], name: str) -> list[str]:
    return difflib.get_close_matches(model_stem(name), [e.name for e in manifest], n=4, cutoff=0.6)


def redownload_hint(name: str) -> str:
    """How to get a good copy of a damaged model file back."""
    if find_entry(build_manifest(), name) is not None:
        return f"re-download it (edge-infer models pull {name.removesuffix('.tflite').removesuffix('.hef')})"
    return "copy it again from where it came from"
