"""Secrets read from files: the MQTT password, the live view's user:password, a stream's password.

A path may start with `${CREDENTIALS_DIRECTORY}` (or `$CREDENTIALS_DIRECTORY`): systemd's credentials
(`LoadCredential=NAME:/etc/edge-infer/NAME` in a drop-in) are then read where systemd put them for this
run, a private directory only the service can read (systemd.exec(5), "Credentials").
A file that others can read is warned about: the password is only as private as the file.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from ..errors import ConfigError

log = logging.getLogger(__name__)

CREDENTIALS = "CREDENTIALS_DIRECTORY"


def secret_path(path: str, key: str, environ: Mapping[str, str] = os.environ) -> Path:
    """`path` with a leading ${CREDENTIALS_DIRECTORY} replaced by the directory systemd gave this run."""
    for variable in (f"${{{CREDENTIALS}}}", f"${CREDENTIALS}"):
        if path.startswith(variable):
            if not environ.get(CREDENTIALS):
                raise ConfigError(f"{key}: '{path}' names systemd's credentials directory, and there is none: "
                                  f"run it as the service with LoadCredential= (systemctl edit edge-infer), or give a "
                                  "plain path")
            return Path(environ[CREDENTIALS].split(":")[0]) / path[len(variable):].lstrip("/")
    return Path(path).expanduser()


def read_secret(path: str, key: str, environ: Mapping[str, str] = os.environ) -> str:
    """The file's text without its final newline; ConfigError naming `key` when it cannot be read."""
    file = secret_path(path, key, environ)
    try:
        status = file.stat()
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read '{path}': {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{key}: '{path}' is not UTF-8 text") from None
    warn_if_readable_by_others(file, status, key)
    return text.rstrip("\r\n")


def warn_if_readable_by_others(file: Path, status: os.stat_result, key: str) -> None:
    """World-readable, or readable by a group this process is not in (chmod 0640, group edge-infer, is the
    service's own way to read it)."""
    world = bool(status.st_mode & stat.S_IROTH)
    group = bool(status.st_mode & stat.S_IRGRP) and status.st_gid not in {os.getegid(), *os.getgroups()}
    if world or group:
        who = "every user of this machine" if world else f"the members of group {status.st_gid}"
        log.warning("%s: %s can be read by %s: chmod 0600 it if the service's user owns it, else chgrp "
                    "edge-infer and chmod 0640 it", key, file, who)


def url_with_password(url: str, password: str, key: str) -> str:
    """`scheme://user@host/...` with the password put in (percent-encoded, so any character may be in it)."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or not userinfo:
        raise ConfigError(f"{key}: the URL names no user for the password: write it as scheme://USER@host/...")
    if ":" in userinfo:
        raise ConfigError(f"{key}: the URL has a password in it already: remove it from the URL")
    return urlunsplit(parts._replace(netloc=f"{userinfo}:{quote(password, safe='')}@{host}"))
