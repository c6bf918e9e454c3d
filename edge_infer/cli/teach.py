"""`edge-infer teach train`: teach your own classes on the device, from a folder of images per class."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import EXIT_OK, ConfigError
from ..models.zoo import DEFAULT_MODEL


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    teach = commands.add_parser("teach", help="teach your own classes on this machine (no TensorFlow)")
    verbs = teach.add_subparsers(dest="verb", required=True, metavar="VERB")
    train = verbs.add_parser(
        "train", help="a TFLite classifier of your classes from DATASET/<class>/*.jpg",
        description="Embeds every image (and flipped, cropped and relit variants) with the base MobileNet cut "
        "before its logits, learns a linear head with numpy (weight imprinting for a few images per class, "
        "softmax regression from 10), reports held-out accuracy per class, and writes the base + "
        "FULLY_CONNECTED + SOFTMAX as a TFLite model carrying its labels, which run, bench and tune take.")
    train.add_argument("dataset", help="a folder with a subfolder of .jpg/.png/.bmp images per class")
    train.add_argument("--base", default=DEFAULT_MODEL, help=f"a MobileNet classifier or embedding extractor: "
                       f"a .tflite path or a model name (default {DEFAULT_MODEL})")
    train.add_argument("--output", help="the .tflite to write (required, unless --compare)")
    train.add_argument("--crop", choices=("center", "stretch", "letterbox"), default="center",
                       help="how images are fitted to the model's input: as the run's preprocess.crop (default center)")
    train.add_argument("--folds", type=int, default=5, help="k of the k-fold held-out test (default 5)")
    train.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    train.add_argument("--compare", nargs="*", metavar="BASE", help="write no model: instead, for each base (names or "
                       "paths; default: MobileNet V1 0.25-1.0 x 128-224 quantized and the default V2, pulled if "
                       "missing), the held-out accuracy on DATASET beside the speed on this board and the size of "
                       "the model it would give, and the fastest within a point of the best")
    train.add_argument("--seconds", type=float, default=2.0, help="with --compare: how long each base's speed is "
                       "measured (default 2; at least 20 invokes)")
    train.add_argument("--apply", metavar="CONFIG", help="then set the model in this config (the region's model, or "
                       "model.path without cameras:), comments kept; a run of that config moves to it within 2 s, "
                       "without a restart")
    train.add_argument("--camera", help="with --apply and cameras: the camera")
    train.add_argument("--region", help="with --apply and cameras: the camera's region")
    train.set_defaults(handler=command_train)

    take = verbs.add_parser(
        "capture", help="save samples of a class from a camera (the region's crop, full size) into DATASET/CLASS/",
        description="Reads the configured camera (or --source) and saves --count crops of the region, one every "
        "--interval seconds, as DATASET/CLASS/<time>-<frame>.jpg, ready for teach train.")
    take.add_argument("dataset", help="the dataset folder (created if needed)")
    take.add_argument("--class", dest="label", required=True, help="the class these samples show, e.g. open")
    take.add_argument("--count", type=int, default=20, help="samples to save (default 20)")
    take.add_argument("--interval", type=float, default=0.5, help="seconds between samples (default 0.5)")
    take.add_argument("--config", help="configuration file (default: $EDGE_INFER_CONFIG, ./config.yaml, ...)")
    take.add_argument("--camera", help="the camera, with cameras: in the config")
    take.add_argument("--region", help="the camera's region (default: the whole frame)")
    take.add_argument("--source", help="a source instead of the config's (as edge-infer run --source)")
    take.set_defaults(handler=command_capture)


def command_train(args: argparse.Namespace) -> int:
    from ..pipeline.preprocess import PreprocessConfig
    from ..teach.apply import apply_model, check_apply
    from ..teach.train import TeachRequest, train
    from .run import route_native_stderr

    if args.compare is not None:
        return command_compare(args)
    if not args.output:
        raise ConfigError("teach train: --output FILE.tflite is needed (or --compare, which writes no model)")
    if args.apply:  # refused before the training, not after it
        check_apply(args.apply, args.camera, args.region)
    restore_stderr = route_native_stderr()  # LiteRT's INFO lines become debug lines, as in a run
    try:
        result = train(TeachRequest(args.dataset, args.base, args.output, PreprocessConfig(crop=args.crop),
                                    max(2, args.folds), progress=sys.stderr.isatty() and not args.json))
    finally:
        restore_stderr()
    evaluation = result.evaluation
    per_class = evaluation.class_accuracy() if evaluation is not None else None
    applied = apply_model(args.apply, result.output, args.camera, args.region) if args.apply else None
    if applied:
        print(f"edge-infer: set {applied} in {args.apply}: a run of it moves to the model within 2 s",
              file=sys.stderr)
    if args.json:
        json.dump({**result.to_json_dict(), "applied": applied}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    out = sys.stdout
    width = max(len(name) for name in result.classes)
    out.write(f"{result.method} over {sum(result.images)} images of {len(result.classes)} classes\n\n")
    out.write(f"{'class':<{width}}  images  held-out accuracy\n")
    for number, (name, count) in enumerate(zip(result.classes, result.images, strict=True)):
        shown = "-" if per_class is None else f"{per_class[number]:.0%}"
        out.write(f"{name:<{width}}  {count:>6}  {shown}\n")
    if evaluation is not None:
        out.write(f"\nheld out ({evaluation.folds}-fold): {evaluation.accuracy:.1%}; confusion (rows: true, columns: "
                  "predicted)\n")
        out.write(f"{'':<{width}}  " + "  ".join(f"{name[:8]:>8}" for name in result.classes) + "\n")
        for name, row in zip(result.classes, evaluation.confusion, strict=True):
            out.write(f"{name:<{width}}  " + "  ".join(f"{int(n):>8}" for n in row) + "\n")
    else:
        out.write("\nno held-out test: a class has a single image\n")
    for warning in result.warnings:
        out.write(f"warning: {warning}\n")
    out.write(f"\nwrote {result.output} ({result.size / 1e6:.1f} MB); run it with: edge-infer run --model "
              f"{result.output}\n")
    return EXIT_OK


def command_compare(args: argparse.Namespace) -> int:
    """`teach train DATASET --compare [BASE ...]`: a table (or JSON) per base; no model is written."""
    from ..pipeline.preprocess import PreprocessConfig
    from ..teach.compare import CompareRequest, compare, format_comparison
    from .run import route_native_stderr

    if args.output or args.apply:
        raise ConfigError("--compare writes no model: leave out --output and --apply, then train the base it "
                          "suggests with --base")
    restore_stderr = route_native_stderr()
    try:
        comparison = compare(CompareRequest(args.dataset, tuple(args.compare), PreprocessConfig(crop=args.crop),
                                            max(2, args.folds), progress=sys.stderr.isatty() and not args.json,
                                            seconds=max(0.0, args.seconds),
                                            note=lambda line: print(f"edge-infer: {line}", file=sys.stderr,
                                                                    flush=True)))
    finally:
        restore_stderr()
    if args.json:
        json.dump(comparison.to_json_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_comparison(comparison))
    return EXIT_OK


def command_capture(args: argparse.Namespace) -> int:
    from ..config import find_config_file, load_config
    from ..errors import ConfigError
    from ..run import open_run
    from ..sources.registry import source_from_argument
    from ..teach.capture import SampleWriter, capture_config, sample_folder
    from .run import route_native_stderr

    if args.count < 1 or args.interval < 0:
        raise ConfigError("--count must be at least 1 and --interval at least 0")
    overrides = {("source",): (source_from_argument(args.source), "--source")} if args.source else None
    config, box = capture_config(load_config(find_config_file(args.config), overrides), args.camera, args.region)
    folder = sample_folder(args.dataset, args.label)
    stop = args.signals.stop
    writer = SampleWriter(folder, box, args.count, args.interval, stop,
                          saved=lambda path: print(f"saved {path}", file=sys.stderr, flush=True))
    restore_stderr = route_native_stderr()
    try:
        with open_run(config, stop=stop, outputs=[writer]) as run:
            run.execute()
    finally:
        writer.close()
        restore_stderr()
    print(f"{len(writer.written)} sample(s) of {args.label} in {args.dataset}", file=sys.stderr)
    return EXIT_OK if writer.written else 1
