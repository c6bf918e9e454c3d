"""One camera end to end, against this machine's limit and against a serial loop, for every MobileNet in
../shared: a 640x480 MJPG video in every-frame mode, measured alternating in rounds in one process, so a
busy neighbour on a shared machine moves every measurement alike. Not collected by pytest (no test_ prefix).

- limit: cores / (decode + preprocess + invoke on one thread), each timed alone (held out), with the
  video decoded whole by OpenCV's FFmpeg; and the same with the frames read as the pipeline reads them
  (the opencv source decodes an MJPEG video's JPEGs at the scale the model needs, sources/opencv.py);
- serial: one thread reads, preprocesses straight into the input tensor and invokes (all cores' threads),
  with the frames decoded whole, and read as the pipeline reads them;
- pipeline: `edge-infer run`'s own (capture thread decoding and preprocessing, the loop invoking), with the
  interpreter on each thread count in --threads: what the split between them costs.

    .venv/bin/python tests/bench_end_to_end.py
    .venv/bin/python tests/bench_end_to_end.py --rounds 5 --frames 300 --threads 1,2
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from conftest import read_all, side_by_side, test_data_dir  # noqa: E402

from edge_infer.config import Config, RunConfig  # noqa: E402
from edge_infer.models.files import read_model  # noqa: E402
from edge_infer.models.runtime import load_runtime, usable_cores  # noqa: E402
from edge_infer.pipeline.classifier import ModelConfig, load_classifier  # noqa: E402
from edge_infer.pipeline.preprocess import Preprocessor  # noqa: E402
from edge_infer.run import open_run  # noqa: E402
from edge_infer.schema import Origin  # noqa: E402
from edge_infer.service.board import board_model  # noqa: E402
from edge_infer.sources.base import SourceHints  # noqa: E402
from edge_infer.sources.opencv import OpenCVConfig, OpenCVSource  # noqa: E402
from edge_infer.sources.registry import build_source_spec  # noqa: E402

MODELS = ("mobilenet_v1_0.25_128_quant", "mobilenet_v1_0.5_160_quant", "mobilenet_v1_0.75_192_quant",
          "mobilenet_v2_1.0_224_quant", "tf2_mobilenet_v2_1.0_224_ptq")


def write_video(path: Path, frames: int) -> None:
    """A 640x480 MJPG video of real photos panning, so every frame decodes like a camera's."""
    scene = cv2.resize(side_by_side(test_data_dir() / "images", "bird.bmp", "parrot.jpg"), (1280, 480))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    for i in range(frames):
        start = (i * 7) % 640
        writer.write(np.ascontiguousarray(scene[:, start: start + 640]))
    writer.release()


def decode_ms(video: Path, hints: SourceHints | None = None) -> float:
    """Median time to read one frame: decoded whole by OpenCV (no hints), or as the pipeline's source reads it."""
    source = OpenCVSource(OpenCVConfig(device=str(video)), hints)
    times = []
    while True:
        started = time.perf_counter()
        frame = source.read()
        if frame is None:
            break
        times.append((time.perf_counter() - started) * 1e3)
        frame.release()
    source.close()
    return statistics.median(times)


def frames_of(video: Path, hints: SourceHints | None = None) -> list[np.ndarray]:
    return read_all(OpenCVSource(OpenCVConfig(device=str(video)), hints))


def hints_for(model: Path) -> SourceHints:
    """What `edge-infer run` tells the source of this model (run.source_hints, default crop, no output showing
    the pictures)."""
    info = load_classifier(ModelConfig(path=str(model), num_threads=1)).info
    return SourceHints(info.input.width, info.input.height, "center")


def held_out_ms(model: Path, frames: list[np.ndarray], own_frames: list[np.ndarray]) -> tuple[float, float, float]:
    """Median preprocess times (of whole frames, of the frames as the pipeline reads them) and one-thread invoke
    time, each alone."""
    classifier = load_classifier(ModelConfig(path=str(model), num_threads=1))
    preprocessor = Preprocessor(classifier.info.input)
    staged = np.empty((classifier.info.input.height, classifier.info.input.width, 3), classifier.info.input.dtype)
    pre: dict[int, list[float]] = {0: [], 1: []}
    for kind, images in enumerate((frames, own_frames)):
        for frame in images:
            started = time.perf_counter()
            preprocessor(frame, staged)
            pre[kind].append((time.perf_counter() - started) * 1e3)
    inv = []
    for _ in range(len(frames)):
        started = time.perf_counter()
        classifier.invoke()
        inv.append((time.perf_counter() - started) * 1e3)
    return statistics.median(pre[0]), statistics.median(pre[1]), statistics.median(inv)


def serial_fps(model: Path, video: Path, threads: int, hints: SourceHints | None) -> float:
    """One thread: read, preprocess into the input tensor, invoke; the interpreter on `threads` threads. With
    `hints` the frames are read as the pipeline's source reads them, else decoded whole by OpenCV's FFmpeg."""
    runtime = load_runtime()
    interpreter = runtime.interpreter(model_content=read_model(model).content, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    from edge_infer.models.tensors import classifier_tensors

    spec, _ = classifier_tensors(read_model(model), interpreter.get_input_details(), interpreter.get_output_details())
    preprocessor = Preprocessor(spec)
    tensor = interpreter.tensor(detail["index"])
    source = OpenCVSource(OpenCVConfig(device=str(video)), hints)
    count, started = 0, time.perf_counter()
    while (frame := source.read()) is not None:
        preprocessor(frame.image, tensor()[0])
        frame.release()
        interpreter.invoke()
        count += 1
    source.close()
    return count / (time.perf_counter() - started)


def pipeline_fps(model: Path, video: Path, threads: int) -> float:
    source = build_source_spec({"type": "opencv", "device": str(video)}, Origin(), ("source",))
    config = Config(model=ModelConfig(path=str(model), num_threads=threads), source=source,
                    run=RunConfig(frames="all"))

    class Count:
        name = "count"

        def __init__(self) -> None:
            self.first: float | None = None
            self.last = 0.0
            self.n = 0

        def publish(self, _result: object) -> None:
            now = time.perf_counter()
            self.first = self.first or now
            self.last = now
            self.n += 1

        def close(self) -> None:
            pass

    counter = Count()
    with open_run(config, outputs=[counter], environ={}, stop=threading.Event()) as run:
        run.execute()
    assert counter.first is not None
    return (counter.n - 1) / (counter.last - counter.first)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", default=None, help="the pipeline's interpreter thread counts (default: "
                        "1 and all cores)")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    cores = usable_cores()
    split = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, cores})
    models = [test_data_dir() / "models" / f"{name}.tflite" for name in args.models.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "clip.avi"
        write_video(video, args.frames)
        frames = frames_of(video)
        for model in models:
            hints = hints_for(model)
            own_frames = frames_of(video, hints)
            limits, own_limits, serials, own_serials = [], [], [], []
            pipelines: dict[int, list[float]] = {t: [] for t in split}
            for _ in range(args.rounds):
                decode, own_decode = decode_ms(video), decode_ms(video, hints)
                pre, own_pre, inv = held_out_ms(model, frames, own_frames)
                limits.append(1000.0 * cores / (decode + pre + inv))
                own_limits.append(1000.0 * cores / (own_decode + own_pre + inv))
                serials.append(serial_fps(model, video, cores, None))
                own_serials.append(serial_fps(model, video, cores, hints))
                for threads in split:
                    pipelines[threads].append(pipeline_fps(model, video, threads))
                print(f"{model.stem}: decode {decode:.2f} + preprocess {pre:.2f} + invoke {inv:.2f} ms; read as the "
                      f"pipeline does {own_decode:.2f} + preprocess {own_pre:.2f} ms ({own_frames[0].shape[1]}x"
                      f"{own_frames[0].shape[0]})", file=sys.stderr)
            rows.append((model.stem, statistics.median(limits), statistics.median(own_limits),
                         statistics.median(serials), statistics.median(own_serials),
                         {t: statistics.median(v) for t, v in pipelines.items()}))
    print(f"\n{board_model()}, {cores} cores, {platform.machine()}, Python {platform.python_version()}, OpenCV "
          f"{cv2.__version__}, numpy {np.__version__}; a 640x480 MJPG video of {args.frames} frames, every frame; "
          f"medians of {args.rounds} alternating rounds\n")
    header = " | ".join(f"pipeline {t} thr FPS | vs limit | vs own limit | vs serial | vs own serial" for t in split)
    print(f"| model | limit FPS | own limit FPS | serial FPS | own serial FPS | {header} |")
    print("|---|---|---|---|---|" + "---|---|---|---|---|" * len(split))
    for name, limit, own_limit, serial, own_serial, pipeline in rows:
        cells = " | ".join(f"{pipeline[t]:.0f} | {pipeline[t] / limit:.2f} | {pipeline[t] / own_limit:.2f} | "
                           f"{pipeline[t] / serial:.2f} | {pipeline[t] / own_serial:.2f}" for t in split)
        print(f"| {name} | {limit:.0f} | {own_limit:.0f} | {serial:.0f} | {own_serial:.0f} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
