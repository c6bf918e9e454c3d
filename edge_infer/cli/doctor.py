"""`edge-infer doctor`: the checks of this machine, install and configuration, as a checklist or as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from ..service.doctor import Report, run_checks

MARKS = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = commands.add_parser("doctor", help="check this machine, the install and the configuration; "
                                 "say what to fix", description="Checks the system, Python, the runtime, "
                                 "cameras, the Coral, the board, the models, the configuration, the MQTT broker "
                                 "and the service. Exit status 1 when a check fails (warnings allowed).")
    doctor.add_argument("--config", help="configuration file (default: $EDGE_INFER_CONFIG, ./config.yaml, "
                        "/etc/edge-infer/config.yaml)")
    doctor.add_argument("--json", action="store_true", help='{"checks": [{"name", "verdict", "detail", "fix"}], '
                        '"failed": N}')
    doctor.set_defaults(handler=command_doctor)


def write_checklist(report: Report, out: TextIO) -> None:
    width = max(len(check.name) for check in report.checks)
    for check in report.checks:
        out.write(f"{MARKS[check.verdict]:<4}  {check.name:<{width}}  {check.detail}\n")
        if check.fix and check.verdict in ("warn", "fail"):
            out.write(f"{'':<4}  {'':<{width}}  fix: {check.fix}\n")
    counts = {verdict: sum(c.verdict == verdict for c in report.checks) for verdict in MARKS}
    out.write(f"\n{counts['ok']} ok, {counts['warn']} warnings, {counts['fail']} failed, {counts['skip']} skipped\n")


def command_doctor(args: argparse.Namespace) -> int:
    report = run_checks(args.config)
    if args.json:
        json.dump(report.as_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        write_checklist(report, sys.stdout)
    return 1 if report.failed else 0
