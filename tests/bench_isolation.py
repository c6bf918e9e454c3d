"""What `model.isolate` costs per frame: the same model invoked in process and through its worker process (the
input copied into shared memory, one message each way, the scores read back), in alternating windows, so a busy
neighbour on a shared machine moves both alike. Not collected by pytest (no test_ prefix).

    .venv/bin/python tests/bench_isolation.py                 # V1 0.25_128 and V2 1.0_224 from ../shared
    .venv/bin/python tests/bench_isolation.py --rounds 8 --frames 400 --threads 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_infer.pipeline.classifier import Classifier, ModelConfig, load_classifier  # noqa: E402
from edge_infer.service.board import board_model  # noqa: E402

MODELS = ("mobilenet_v1_0.25_128_quant", "mobilenet_v2_1.0_224_quant")


def window(classifier: Classifier, staged: np.ndarray, frames: int) -> float:
    """Milliseconds per frame: what the inference loop does with a staged frame (copy, invoke, read)."""
    scores = np.empty(classifier.info.output.shape[1], np.float32)
    start = time.perf_counter()
    for _ in range(frames):
        np.copyto(classifier.input_tensor(), staged)
        classifier.invoke()
        classifier.read_scores(scores)
    return (time.perf_counter() - start) / frames * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("EDGE_INFER_TEST_DATA", str(REPO.parent / "shared")))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    image = cv2.imread(str(Path(args.data) / "images" / "parrot.jpg"))
    print(f"machine: {board_model() or platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{args.threads} thread(s), {args.rounds} alternating rounds of {args.frames} frames")
    print(f"{'model':<30} {'in process':>11} {'isolated':>10} {'cost/frame':>11} {'throughput':>11}")
    for name in MODELS:
        path = str(Path(args.data) / "models" / f"{name}.tflite")
        local = load_classifier(ModelConfig(path=path, num_threads=args.threads, isolate=False))
        isolated = load_classifier(ModelConfig(path=path, num_threads=args.threads, isolate=True))
        spec = local.info.input
        staged = np.ascontiguousarray(cv2.resize(image, (spec.width, spec.height))[..., ::-1]).astype(spec.dtype)
        for classifier in (local, isolated):
            window(classifier, staged, 20)  # warm-up
        times: dict[str, list[float]] = {"local": [], "isolated": []}
        for _ in range(args.rounds):
            times["local"].append(window(local, staged, args.frames))
            times["isolated"].append(window(isolated, staged, args.frames))
        isolated.close()
        mine, theirs = statistics.median(times["local"]), statistics.median(times["isolated"])
        print(f"{name:<30} {mine:>8.3f} ms {theirs:>7.3f} ms {theirs - mine:>+8.3f} ms {mine / theirs - 1:>+10.1%}")


if __name__ == "__main__":
    main()
