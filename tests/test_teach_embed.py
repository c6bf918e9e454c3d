"""teach/embed.py reads a dataset's images through the media checks a run's images source uses: an image bomb (a
header claiming hundreds of millions of pixels) and a truncated JPEG are skipped with a warning naming the file,
never decoded into gigabytes; a class (or a dataset) left with nothing readable is refused with one line saying
which files and why."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import error_lines
from test_images import png_header_claiming
from test_teach_accuracy import compose_dataset

from edge_infer.errors import ConfigError
from edge_infer.models.files import read_model
from edge_infer.pipeline.preprocess import PreprocessConfig
from edge_infer.teach.dataset import read_dataset
from edge_infer.teach.embed import VARIANTS, Extractor, embed_dataset

BASE = "mobilenet_v1_0.25_128_quant.tflite"
# 900 million pixels: under OpenCV's own limit (2^30), so only our header check stands between it and a 2.7 GB
# decode.
BOMB = (30_000, 30_000)


def jpeg_claiming(photo: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose start-of-frame header claims width x height."""
    at = 2
    while photo[at + 1] not in range(0xC0, 0xC3):  # SOF0..SOF2: baseline, extended, progressive
        at += 2 + int.from_bytes(photo[at + 2: at + 4], "big")
    return photo[: at + 5] + struct.pack(">HH", height, width) + photo[at + 9:]


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_hwm() -> bool:
    """VmHWM back to the current RSS (Linux 4.0+: writing 5 to clear_refs); False where that cannot be done."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def spoil(folder: Path, photo: bytes) -> dict[str, Path]:
    """A PNG bomb, a JPEG bomb and a truncated JPEG, in `folder`."""
    spoilt = {"png bomb": folder / "bomb.png", "jpeg bomb": folder / "bomb.jpg", "truncated": folder / "cut.jpg"}
    spoilt["png bomb"].write_bytes(png_header_claiming(*BOMB))
    spoilt["jpeg bomb"].write_bytes(jpeg_claiming(photo, *BOMB))
    spoilt["truncated"].write_bytes(photo[: len(photo) * 2 // 3])
    return spoilt


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def extractor(models: Path) -> Extractor:
    return Extractor(read_model(models / BASE), PreprocessConfig())


def test_bombs_and_a_truncated_jpeg_are_skipped_with_a_warning_naming_each(shared: Path, tmp_path: Path,
                                                                          extractor: Extractor):
    dataset = compose_dataset(shared, tmp_path / "dataset", 3, seed=1)
    photo = (dataset / "cat" / "000.jpg").read_bytes()
    spoilt = spoil(dataset / "cat", photo)
    hwm_reset = reset_hwm()  # VmHWM from now on; without it only the warnings below show the bombs were refused
    before = status_kb("VmRSS")
    # On the module's own logger: an earlier test may have left the CLI's handlers in place of pytest's on the root.
    warnings = Warnings()
    logger = logging.getLogger("edge_infer.teach.embed")
    logger.addHandler(warnings)
    try:
        samples = embed_dataset(extractor, read_dataset(dataset), progress=False)
    finally:
        logger.removeHandler(warnings)
    if hwm_reset:  # a decoded bomb would take 2.7 GB; the photos themselves a few MB
        assert status_kb("VmHWM") - before < 100_000
    assert samples.images_per_class(5).tolist() == [3, 3, 3, 3, 3]  # the three spoilt files are not samples
    assert len(samples.labels) == 15 * VARIANTS
    said = set(warnings.messages)
    assert f"skipped {spoilt['png bomb']}: 30000x30000 is more than the 100 million pixels edge-infer decodes " \
           "(a damaged header, or scale it down)" in said
    assert f"skipped {spoilt['jpeg bomb']}: 30000x30000 is more than the 100 million pixels edge-infer decodes " \
           "(a damaged header, or scale it down)" in said
    assert f"skipped {spoilt['truncated']}: truncated (damaged, or still being written)" in said
    assert len(said) == 3


def test_a_class_left_without_a_readable_image_is_refused_with_one_line_naming_the_files(shared: Path,
                                                                                        tmp_path: Path, cli):
    dataset = compose_dataset(shared, tmp_path / "dataset", 2, seed=2, photos={"cat": ("images/cat.bmp",),
                                                                              "dog": ("scenes/dog_segmentation.bmp",)})
    photo = (dataset / "cat" / "000.jpg").read_bytes()
    (tmp_path / "dataset" / "bin").mkdir()
    spoil(dataset / "bin", photo)
    done = cli("teach", "train", str(dataset), "--base", str(shared / "models" / BASE), "--output",
               str(tmp_path / "m.tflite"), json_lines=False)
    assert done.status == 2 and len(error_lines(done.stderr)) == 1, done.stderr
    assert error_lines(done.stderr)[0] == (
        f"edge-infer: error: dataset '{dataset}': no readable image in class(es) bin (bin/bomb.jpg: 30000x30000 is "
        "more than the 100 million pixels edge-infer decodes (a damaged header, or scale it down); bin/bomb.png: "
        "30000x30000 is more than the 100 million pixels edge-infer decodes (a damaged header, or scale it down); "
        "bin/cut.jpg: truncated (damaged, or still being written))")
    assert done.stderr.count("edge-infer: warning: skipped") == 3  # each file also warned about as it is met
    assert not (tmp_path / "m.tflite").exists()


def test_a_dataset_with_nothing_readable_is_refused(tmp_path: Path, extractor: Extractor):
    for name in ("open", "closed"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.png").write_bytes(png_header_claiming(*BOMB))
        (tmp_path / name / "b.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    with pytest.raises(ConfigError) as refused:
        embed_dataset(extractor, read_dataset(tmp_path), progress=False)
    message = str(refused.value)
    assert message.startswith(f"dataset '{tmp_path}': none of its images can be read (closed/a.png: 30000x30000 ")
    assert message.endswith("; and 1 more)") and "\n" not in message


def test_a_large_sample_is_decoded_at_a_reduced_scale_and_embeds_as_the_whole_one(tmp_path: Path, images: Path,
                                                                                  extractor: Extractor):
    """A 4000 x 3000 capture (36 MB decoded whole) is read at an eighth (or a quarter) inside libjpeg, as the run's
    images source reads it, and its embedding is the one of the whole decode, near enough."""
    from edge_infer.teach.embed import read_sample

    big = cv2.resize(cv2.imread(str(images / "cat.bmp")), (4000, 3000), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / "big.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    image, problem = read_sample(tmp_path / "big.jpg", extractor.hints)
    assert image is not None and problem == "" and image.shape[0] <= 3000 // 4
    whole = extractor.embed(cv2.imread(str(tmp_path / "big.jpg")))
    reduced = extractor.embed(image)
    cosine = float(whole @ reduced / np.linalg.norm(whole) / np.linalg.norm(reduced))
    assert cosine > 0.98
