"""Several cameras: total results per second, fairness between cameras and memory per camera, on looping
640x480 MJPEG streams at 30 fps over loopback (one server per camera), measured with `edge-infer bench
--config` (a fresh process per setting) in alternating rounds, so a busy neighbour on a shared machine moves
every setting alike. Not collected by pytest (no test_ prefix).

    .venv/bin/python tests/bench_cameras.py                  # the default model, 1/2/4 cameras x 1/3 regions
    .venv/bin/python tests/bench_cameras.py --model mobilenet_v1_0.25_128_quant --rounds 3 --seconds 8
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from conftest import side_by_side, test_data_dir  # noqa: E402
from mjpeg import MjpegServer  # noqa: E402

from edge_infer.bench.load import ConfigLoad, run_load_worker  # noqa: E402
from edge_infer.service.board import board_model  # noqa: E402

THREE_REGIONS = """    regions:
      left: {box: [0, 0, 0.5, 1]}
      right: {box: [0.5, 0, 0.5, 1]}
      middle: {box: [0.25, 0.25, 0.5, 0.5]}
"""


def write_config(folder: Path, model: Path, threads: int | None, urls: list[str], regions: int) -> Path:
    cameras = "".join(f"  cam{i}:\n    source: {{type: opencv, device: \"{url}\"}}\n"
                      + (THREE_REGIONS if regions == 3 else "") for i, url in enumerate(urls))
    path = folder / f"c{len(urls)}r{regions}.yaml"
    thread_line = f"  num_threads: {threads}\n" if threads else ""
    path.write_text(f"model:\n  path: {model}\n{thread_line}cameras:\n{cameras}")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tf2_mobilenet_v2_1.0_224_ptq")
    parser.add_argument("--threads", type=int, help="interpreter threads (default: the run's own default)")
    parser.add_argument("--cameras", default="1,2,4")
    parser.add_argument("--regions", default="1,3")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--fps", type=float, default=30.0, help="each stream's frame rate")
    args = parser.parse_args()
    model = test_data_dir() / "models" / f"{args.model}.tflite"
    frame = np.ascontiguousarray(cv2.resize(side_by_side(test_data_dir() / "images", "bird.bmp", "parrot.jpg"),
                                            (640, 480)))
    counts = [int(n) for n in args.cameras.split(",")]
    region_counts = [int(n) for n in args.regions.split(",")]
    servers = [MjpegServer(frame, fps=args.fps) for _ in range(max(counts))]
    for server in servers:
        server.start()
    loads: dict[tuple[int, int], list[ConfigLoad]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = [(n, r) for r in region_counts for n in counts]
            for round_number in range(args.rounds):
                for n, r in settings:
                    config = write_config(Path(tmp), model, args.threads, [s.url for s in servers[:n]], r)
                    load = run_load_worker(str(config), args.seconds)
                    loads.setdefault((n, r), []).append(load)
                    print(f"round {round_number + 1}: {n} camera(s) x {r} region(s): {load.results_per_s:.1f} "
                          f"results/s, RSS {load.peak_rss_mb:.0f} MB", file=sys.stderr)
    finally:
        for server in servers:
            server.stop()

    print(f"\n{board_model()}, {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
          f"OpenCV {cv2.__version__}, numpy {np.__version__}; {args.model}, threads {args.threads or 'default'}; "
          f"{len(servers)} MJPEG streams of 640x480 at {args.fps:g} fps on loopback; medians of {args.rounds} rounds "
          f"of {args.seconds:g} s\n")
    print("| cameras | regions each | results/s | camera frames/s (total) | slowest / fastest camera | CPU % | "
          "peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for n, r in sorted(loads):
        runs = loads[n, r]
        results = statistics.median(load.results_per_s for load in runs)
        frames = statistics.median(sum(load.frames_per_s.values()) for load in runs)
        fairness = statistics.median(min(load.frames_per_s.values()) / max(load.frames_per_s.values())
                                     for load in runs if max(load.frames_per_s.values()) > 0)
        cpu = statistics.median(load.cpu_percent for load in runs)
        rss = statistics.median(load.peak_rss_mb for load in runs)
        print(f"| {n} | {r} | {results:.1f} | {frames:.1f} | {fairness:.2f} | {cpu:.0f} | {rss:.0f} |")
    print()
    for r in region_counts:
        one, most = (1, r), (max(counts), r)
        if one in loads and most in loads and most != one:
            ratio = statistics.median(load.results_per_s for load in loads[most]) / max(
                1e-9, statistics.median(load.results_per_s for load in loads[one])) / 1
            rss_step = (statistics.median(load.peak_rss_mb for load in loads[most])
                        - statistics.median(load.peak_rss_mb for load in loads[one])) / (most[0] - 1)
            print(f"{r} region(s): {most[0]} cameras give {ratio:.2f}x the results of one; each extra camera "
                  f"adds {rss_step:.1f} MB of peak RSS")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
