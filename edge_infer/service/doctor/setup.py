"""Checks of what edge-infer is set up with: the models, the configuration, the MQTT broker, the service."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import EdgeInferError, ModelError
from ...models.files import EDGETPU_OP, HEF_MAGIC, is_tflite, model_dirs, resolve_model
from ...models.pull import sha256_of
from ...models.zoo import DEFAULT_MODEL, build_manifest, find_entry, redownload_hint
from .report import SERVICE, Check, Runner, Verdict, joined, run_command, worst

if TYPE_CHECKING:
    from ...config import Config
    from ...outputs.mqtt import MqttConfig

MQTT_TIMEOUT_S = 2.0
IN_DIRECTORIES = "in the model directories"


# 11. Model files -----------------------------------------------------------------------------------------


def check_models(configured: Sequence[str], models_dir: str | None) -> Check:
    """The configured model(s) and every .tflite in the model directories, by sha256 against the zoo."""
    name = "models"
    manifest = build_manifest()
    verdicts: list[Verdict] = []
    problems: list[str] = []
    fixes: list[str] = []
    files: dict[Path, str] = {}  # path -> how it was found
    for wanted in configured:
        try:
            files.setdefault(resolve_model(wanted, models_dir).resolve(), f"configured {wanted}")
        except ModelError as exc:
            entry = find_entry(manifest, wanted) if os.sep not in wanted else None
            # A zoo name that is not here yet is pulled by the first `edge-infer run`, where there is internet.
            verdicts.append("warn" if entry is not None else "fail")
            problems.append(f"{wanted}: not downloaded yet (edge-infer run fetches it)" if entry is not None
                            else " ".join(str(exc).split()))
            fixes.append(f"edge-infer models pull {entry.name}" if entry is not None
                         else "set model.path to an existing .tflite file")
    directories = [d for d in model_dirs(models_dir) if d.is_dir()]
    for directory in directories:
        for path in sorted([*directory.glob("*.tflite"), *directory.glob("*.hef")]):
            files.setdefault(path.resolve(), IN_DIRECTORIES)
    matched, unknown = [], []
    for path in files:
        try:
            with path.open("rb") as f:
                header = f.read(8)
            digest = sha256_of(path)
        except OSError as exc:
            verdicts.append("fail")
            problems.append(f"{path}: cannot read ({exc.strerror})")
            fixes.append(f"check the permissions of {path}")
            continue
        if not is_tflite(header) and header[:4] != HEF_MAGIC:
            verdicts.append("fail")
            problems.append(f"{path}: not a TFLite model (truncated or damaged)" if path.suffix != ".hef"
                            else f"{path}: not a Hailo HEF (truncated or damaged)")
            fixes.append(redownload_hint(path.name))
            continue
        entry = find_entry(manifest, path.name)
        verdict = entry.published(digest) if entry is not None else None
        if entry is None or verdict is None:
            unknown.append(path.name)
        elif verdict is False:
            verdicts.append("fail")
            problems.append(f"{path}: sha256 {digest[:12]}... is not the zoo's {entry.sha256[:12]}... (damaged)")
            fixes.append(redownload_hint(path.name))
        else:
            matched.append(path.name)
    if not files and not problems:
        return Check(name, "warn", "no model files in " + ", ".join(map(str, model_dirs(models_dir))),
                     f"edge-infer models pull {DEFAULT_MODEL}")
    lines = [*problems]
    lines += [f"model {how.removeprefix('configured ')}" + ("" if how.endswith(str(path)) else f" is {path}")
              for path, how in files.items() if how != IN_DIRECTORIES]
    if files:
        counted = f"{len(files)} file{'s' * (len(files) != 1)} checked: {len(matched)} match the zoo's sha256"
        lines.append(counted + (f", {len(unknown)} not in the zoo ({', '.join(unknown)})" if unknown else ""))
    return Check(name, worst(verdicts) if verdicts else "ok", "; ".join(lines), joined(fixes))


def cpu_model(config: Config | None) -> Path | None:
    """The model the CPU would run: the configured one, or its fallback when it is an Edge TPU build or a HEF."""
    if config is None:
        return None
    for wanted in (config.model.path, config.model.fallback_model):
        if wanted is None:
            continue
        try:
            path = resolve_model(wanted, config.model.models_dir)
            with path.open("rb") as f:
                content = f.read()
            if EDGETPU_OP not in content and not content.startswith(HEF_MAGIC):
                return path
        except (ModelError, OSError):
            continue
    return None


# 12. The configuration ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigState:
    file: str | None
    config: Config | None
    error: str | None


def read_config(explicit: str | None) -> ConfigState:
    from ...config import find_config_file, load_config

    file = find_config_file(explicit)
    try:
        return ConfigState(file, load_config(file), None)
    except EdgeInferError as exc:
        return ConfigState(file, None, " ".join(str(exc).split()))


def check_config(state: ConfigState) -> Check:
    name = "config"
    if state.error is not None:
        where = f" --config {state.file}" if state.file else ""
        return Check(name, "fail", state.error,
                     f"fix {state.file or 'the file'}; edge-infer run --check-config{where} checks it again")
    if state.file is None:
        return Check(name, "ok", "no config file (--config, $EDGE_INFER_CONFIG, ./config.yaml, "
                     "/etc/edge-infer/config.yaml): the defaults")
    return Check(name, "ok", f"{state.file} is valid")


# 13. MQTT broker -------------------------------------------------------------------------------------------


MqttProbe = Callable[["MqttConfig", float], "str | None"]


def probe_mqtt(config: MqttConfig, timeout: float = MQTT_TIMEOUT_S) -> str | None:
    """None when the broker answers CONNECT with an accepting CONNACK within `timeout`; else what went wrong."""
    from ...outputs.mqtt.client import make_client  # paho, only when the broker is probed

    answer: list[Any] = []
    try:
        # Its own client id: reusing the service's would make the broker drop the running service's session.
        client = make_client(config, f"edge-infer-doctor-{socket.gethostname()}-{os.getpid()}")
    except EdgeInferError as exc:
        return " ".join(str(exc).split())
    client.on_connect = lambda _c, _u, _f, reason, _p: answer.append(reason)
    client.connect_timeout = timeout
    try:
        client.connect(config.host, config.port, keepalive=max(5, int(timeout * 2)))
        deadline = time.monotonic() + timeout
        while not answer and time.monotonic() < deadline:
            client.loop(timeout=0.05)
    except (OSError, ValueError, EdgeInferError) as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    finally:
        client.disconnect()
    if not answer:
        return (f"it accepted the connection but sent no CONNACK within {timeout:g} s "
                "(an MQTT broker? TLS as it expects?)")
    if answer[0].is_failure:
        return f"the broker refused the connection: {answer[0]}"
    return None


def check_mqtt(config: Config | None, probe: MqttProbe = probe_mqtt, timeout: float = MQTT_TIMEOUT_S) -> Check:
    name = "mqtt"
    if config is None:
        return Check(name, "skip", "the configuration did not load")
    if "mqtt" not in config.outputs:
        return Check(name, "skip", "outputs do not include mqtt")
    where = f"{config.mqtt.host}:{config.mqtt.port}"
    error = probe(config.mqtt, timeout)
    if error is None:
        return Check(name, "ok", f"{where} answered CONNECT" + (" (TLS)" if config.mqtt.tls else ""))
    return Check(name, "fail", f"{where}: {error}",
                 f"start the broker or point mqtt.host/mqtt.port at it (mosquitto_sub -h {config.mqtt.host} "
                 f"-p {config.mqtt.port} -t '#' tests it); classification goes on meanwhile")


# 14. The service --------------------------------------------------------------------------------------------


def check_service(run: Runner = run_command) -> Check:
    name = "service"
    enabled = run(["systemctl", "is-enabled", SERVICE], timeout=10)
    if enabled is None:
        return Check(name, "skip", "no systemctl")
    state = enabled.stdout.strip()
    if not state or state == "not-found" or "No such file" in enabled.stderr:
        return Check(name, "skip", "the edge-infer service is not installed (sudo ./deploy.sh installs it)")
    active = run(["systemctl", "is-active", SERVICE], timeout=10)
    running = active.stdout.strip() if active is not None else ""
    if not running:
        why = active.last_error if active is not None else "no answer"
        return Check(name, "skip", f"installed ({state}); systemd cannot say whether it runs: {why}")
    detail = f"{running}, {state}"
    if running == "active":
        return Check(name, "ok", detail)
    logs = "journalctl -u edge-infer -e shows why"
    if running == "failed":
        return Check(name, "fail", detail, f"{logs}; fix it, then sudo systemctl restart edge-infer")
    if running in ("activating", "reloading", "deactivating"):
        return Check(name, "warn", detail + " (restarting in a loop?)", logs)
    if state == "enabled":
        return Check(name, "warn", detail + ": enabled but not running", "sudo systemctl start edge-infer")
    return Check(name, "warn", detail + ": installed but not running", "sudo systemctl enable --now edge-infer")
