"""`edge-infer tune`: flags onto a target and a bench plan, a progress bar over the sweep, the decision."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ..bench.load import run_load_worker
from ..bench.plan import BenchPlan, default_threads, find_models
from ..bench.report import format_table
from ..bench.runner import run_bench
from ..bench.tune import LoadCandidate, Setting, Target, choose, choose_load, settings_yaml, write_config
from ..config import find_config_file, load_config
from ..errors import EXIT_OK, ConfigError
from ..models.files import pull_dir
from ..models.pull import progress_bar, pull
from ..models.zoo import build_manifest, find_entry
from ..sources.opencv import URL_PATTERN, is_camera
from .arguments import numbers

EXIT_NO_SETTING = 1


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tune = commands.add_parser("tune", help="pick the most accurate model and thread count that meets a speed "
                               "target on this board", description="Measure the candidate models end to end on "
                               "this board and pick the most accurate (published ImageNet top-1) setting that meets "
                               "the target with a margin. Exit status 1 when none does.")
    wanted = tune.add_mutually_exclusive_group(required=True)
    wanted.add_argument("--fps", type=float, help="frames per second to reach, end to end")
    wanted.add_argument("--latency-ms", type=float, help="per-frame latency (p90) to stay under, end to end")
    tune.add_argument("--min-top1", type=float, help="published ImageNet top-1 %% at least")
    tune.add_argument("--margin", type=float, default=0.15, help="beat the target by this fraction (default 0.15)")
    tune.add_argument("models", nargs="*", metavar="MODEL", help="names, paths or directories (default: every "
                      "mobilenet*.tflite, and *.hef where HailoRT is, in the model directories)")
    tune.add_argument("--models-dir")
    tune.add_argument("--pull", action="store_true", help="first download the zoo's quantized MobileNets "
                      "(the V1 width x resolution grid and V2) into the model directory")
    tune.add_argument("--threads", help="thread counts to try (default: 1 and all cores)")
    tune.add_argument("--config", help="the configuration whose source to measure on (a camera or stream; "
                      "otherwise a synthetic 640x480 frame); with cameras:, the whole configuration, every camera "
                      "and region, and --fps is what its slowest camera must reach")
    tune.add_argument("--write", metavar="CONFIG", help="write the choice into this YAML file (comments and other "
                      "keys kept); without it the YAML to paste is printed")
    tune.add_argument("--quick", action="store_true", help="shorter measurements")
    tune.set_defaults(handler=command_tune)


def pull_candidates(models_dir: str | None) -> None:
    directory = pull_dir(models_dir)
    for entry in build_manifest():
        if entry.kind == "uint8" and entry.top1 is not None:  # the CPU's quantized models (no Edge TPU, no HEF)
            pull(entry, directory, None, progress_bar(entry.name))


def live_source(config_file: str | None) -> dict[str, object] | None:
    """The configured source when it is a camera or a stream: frames as the run will see them."""
    config = load_config(find_config_file(config_file))
    options = config.source.options
    if config.source.type in ("auto", "picamera2"):
        return {"type": config.source.type}
    device = getattr(options, "device", None)
    if config.source.type == "opencv" and device is not None and (is_camera(device) or URL_PATTERN.match(str(device))):
        return {"type": "opencv", "device": device}
    return None


def command_tune(args: argparse.Namespace) -> int:
    if args.margin < 0 or (args.fps is not None and args.fps <= 0) or \
            (args.latency_ms is not None and args.latency_ms <= 0):
        raise ConfigError("--fps, --latency-ms and --margin must be positive")
    target = Target(args.fps, args.latency_ms, args.min_top1, args.margin)
    if args.config and load_config(args.config).cameras:
        return tune_cameras(args, target)
    source = live_source(args.config) if args.config else None  # its errors before anything is measured
    if args.pull:
        pull_candidates(args.models_dir)
    threads = tuple(numbers("--threads", args.threads, int)) if args.threads else default_threads()
    plan = BenchPlan(models=tuple(find_models(args.models, args.models_dir)), threads=threads,
                     warmup=5 if args.quick else 10, runs=20 if args.quick else 100,
                     frames=30 if args.quick else 120, seconds=0.3 if args.quick else 1.5, reference=False,
                     source=source)
    with tqdm(total=len(plan.models) * len(threads), desc="measuring", unit="setting", file=sys.stderr,
              disable=not sys.stderr.isatty()) as bar:
        def progress(line: str) -> None:
            if line.startswith("["):
                bar.set_postfix_str(line.split("] ", 1)[-1], refresh=False)
                bar.update()
            else:
                bar.write(line, file=sys.stderr)

        report = run_bench(plan, progress)
    print(format_table(report))
    choice = choose(report, target)
    if choice is None:
        return no_setting(f"{target.describe()} on this board")
    fps, p90 = choice.pipeline.fps, choice.pipeline.p90_ms
    return present(args, choice, f"{target.describe()}: {choice.model}, {choice.threads} thread(s): {fps:.1f} fps, "
                   f"p90 {p90:.1f} ms per frame", choice.published_top1)


def no_setting(what: str) -> int:
    print(f"edge-infer: no setting meets {what}: relax the target, or try smaller models (--pull)", file=sys.stderr)
    return EXIT_NO_SETTING


def present(args: argparse.Namespace, choice: Setting, chosen: str, top1: float | None) -> int:
    """Say what was chosen, then write it into --write's file or print the YAML to paste."""
    print(f"chosen for {chosen}, published top-1 {top1 if top1 is not None else 'unknown'} %", file=sys.stderr)
    if args.write:
        write_config(Path(args.write), choice)
        load_config(args.write)  # what was written must be a valid configuration
        print(f"edge-infer: wrote the choice into {args.write}", file=sys.stderr)
    else:
        print(settings_yaml(choice), end="")
    return EXIT_OK


def tune_cameras(args: argparse.Namespace, target: Target) -> int:
    """A `cameras:` configuration: each candidate model (for model.path, which every region without a model
    of its own runs) and thread count measured on the whole configuration, as `bench --config` does; the
    target is the frame rate its slowest camera must reach."""
    if args.latency_ms is not None:
        raise ConfigError("--latency-ms: with cameras:, tune takes --fps, the rate the slowest camera must reach")
    config = load_config(args.config)
    if args.pull:
        pull_candidates(args.models_dir)
    threads = tuple(numbers("--threads", args.threads, int)) if args.threads else default_threads()
    seconds = 3.0 if args.quick else 8.0
    candidates = []
    manifest = build_manifest()
    models = find_models(args.models, args.models_dir)
    print(f"{'model':<34} {'threads':>7} {'slowest camera fps':>18} {'results/s':>9} {'top-1 %':>7}")
    for model in models:
        for count in threads:
            print(f"edge-infer: measuring {Path(model).stem} on {count} thread(s) for {seconds:g} s", file=sys.stderr)
            load = run_load_worker(args.config, seconds, model, count)
            entry = find_entry(manifest, Path(model).name)
            top1 = entry.top1 if entry is not None else None
            candidates.append(LoadCandidate(model, count, config.model.delegate, load, top1))
            print(f"{Path(model).stem:<34} {count:>7} {load.slowest_camera_fps:>18.1f} {load.results_per_s:>9.1f} "
                  f"{top1 if top1 is not None else '-':>7}")
    choice = choose_load(candidates, target)
    if choice is None:
        return no_setting(f"{target.describe()} for every camera on this board")
    return present(args, choice, f"{target.describe()}: {Path(choice.path).stem}, {choice.threads} thread(s): "
                   f"slowest camera {choice.load.slowest_camera_fps:.1f} fps", choice.top1)
