"""`edge-infer teach train`: teach your own classes on the device, from a folder of images per class."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import EXIT_OK
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
    train.add_argument("--output", required=True, help="the .tflite to write")
    train.add_argument("--crop", choices=("center", "stretch", "letterbox"), default="center",
                       help="how images are fitted to the model's input: as the run's preprocess.crop (default center)")
    train.add_argument("--folds", type=int, default=5, help="k of the k-fold held-out test (default 5)")
    train.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    train.set_defaults(handler=command_train)


def command_train(args: argparse.Namespace) -> int:
    from ..pipeline.preprocess import PreprocessConfig
    from ..teach.train import TeachRequest, train
    from .run import route_native_stderr

    restore_stderr = route_native_stderr()  # LiteRT's INFO lines become debug lines, as in a run
    try:
        result = train(TeachRequest(args.dataset, args.base, args.output, PreprocessConfig(crop=args.crop),
                                    max(2, args.folds), progress=sys.stderr.isatty() and not args.json))
    finally:
        restore_stderr()
    evaluation = result.evaluation
    per_class = evaluation.class_accuracy() if evaluation is not None else None
    if args.json:
        json.dump({"output": str(result.output), "method": result.method, "classes": [
            {"name": name, "images": count, "held_out_accuracy": None if per_class is None else round(float(acc), 4)}
            for name, count, acc in zip(result.classes, result.images, per_class if per_class is not None
                                        else [None] * len(result.classes), strict=True)],
            "held_out_accuracy": None if evaluation is None else round(evaluation.accuracy, 4),
            "confusion": None if evaluation is None else evaluation.confusion.tolist(),
            "warnings": list(result.warnings), "agreement": round(result.agreement, 4), "bytes": result.size},
            sys.stdout, indent=2)
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
