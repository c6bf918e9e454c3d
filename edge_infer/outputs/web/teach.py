"""The Teach panel's HTTP side: `/api/teach` (what the panel shows) and its write actions.

    GET  /api/teach                                       samples per class, the training, the models in use
    GET  /api/teach/sample?camera=&region=&class=&name=   a sample's thumbnail
    POST /api/teach/capture   {camera, region, class}     the region's crop of the newest frame, as a sample
    POST /api/teach/upload?camera=&region=&class=         a photo (the body) as a sample
    POST /api/teach/delete    {camera, region, class, name}  a sample; without name, the whole class
    POST /api/teach/train     {camera, region, base?}     train the region's classes (progress: /api/teach)
    POST /api/teach/use       {camera, region}            run the trained model there, now and after restarts
    POST /api/teach/revert    {camera, region}            the configuration's model there again

The write actions exist only when the page is this machine's only (web.host loopback) or needs a password
(web.credentials_file), and each must carry the token `/api/teach` gives (X-Edge-Infer-Token): a page on
another site, even one the browser sends the password for, cannot read the token, so cannot write.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, EdgeInferError
from ...sources.base import SourceHints
from ...sources.images import decode_data
from ...teach.desk import Place, TeachDesk, TeachRefused
from .frames import CameraView

TOKEN_HEADER = "X-Edge-Infer-Token"
JSON_BODY_MAX = 16 * 1024
UPLOAD_HINTS = SourceHints(1024, 1024, "center")  # a large JPEG is decoded at a reduced scale, still >= 2048 px
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Reply:
    status: HTTPStatus
    body: bytes
    kind: str = "application/json"


def answer(data: object, status: HTTPStatus = HTTPStatus.OK) -> Reply:
    return Reply(status, json.dumps(data).encode())


def refusal(message: str, status: HTTPStatus) -> Reply:
    return answer({"error": message}, status)


class TeachApi:
    def __init__(self, desk: TeachDesk, views: Mapping[str | None, CameraView], host: str, password: bool) -> None:
        self._desk = desk
        self._views = views
        self.writable = host in LOOPBACK or password
        self._token = secrets.token_urlsafe(32)

    def body_limit(self, path: str) -> int:
        return int(self._desk.config.max_upload_megabytes * 1e6) if path == "/api/teach/upload" else JSON_BODY_MAX

    def get(self, path: str, query: Mapping[str, list[str]]) -> Reply:
        try:
            if path == "/api/teach":
                state: dict[str, Any] = self._desk.state()
                state["writable"] = self.writable
                state["token"] = self._token if self.writable else None
                state["why_not"] = None if self.writable else (
                    "teaching from this page needs web.credentials_file (or web.host 127.0.0.1): anyone who can "
                    "reach the page could change what the camera recognizes")
                return answer(state)
            if path == "/api/teach/sample":
                place = place_from(first(query, "camera"), first(query, "region"))
                jpeg = self._desk.thumbnail(place, first(query, "class") or "", first(query, "name") or "")
                return Reply(HTTPStatus.OK, jpeg, "image/jpeg")
        except ConfigError as exc:
            return refusal(str(exc), HTTPStatus.NOT_FOUND)
        return refusal("not found", HTTPStatus.NOT_FOUND)

    def post(self, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str], body: bytes) -> Reply:
        if not self.writable:
            return refusal("the Teach panel is read-only here: set web.credentials_file", HTTPStatus.FORBIDDEN)
        if not hmac.compare_digest(headers.get(TOKEN_HEADER, "").encode(), self._token.encode()):
            return refusal(f"missing or wrong {TOKEN_HEADER}: reload the page", HTTPStatus.FORBIDDEN)
        try:
            if path == "/api/teach/upload":
                place = place_from(first(query, "camera"), first(query, "region"))
                return answer({"name": self.upload(place, first(query, "class") or "", body)})
            if headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
                return refusal("send the request as application/json", HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
            request = json.loads(body or b"{}")
            if not isinstance(request, dict):
                raise ConfigError("the request must be a JSON object")
            action = ACTIONS.get(path)
            if action is None:
                return refusal("not found", HTTPStatus.NOT_FOUND)
            place = place_from(request.get("camera"), request.get("region"))
            return answer(action(self, place, request))
        except TeachRefused as exc:
            return refusal(str(exc), HTTPStatus.CONFLICT)
        except (ConfigError, ValueError) as exc:
            return refusal(str(exc), HTTPStatus.BAD_REQUEST)
        except EdgeInferError as exc:
            return refusal(str(exc), HTTPStatus.UNPROCESSABLE_ENTITY)

    # -- the actions: (api, place, request) -> what the page is told --

    def capture(self, place: Place, request: dict[str, Any]) -> dict[str, object]:
        view = self._views.get(place[0]) if place[0] is not None else next(iter(self._views.values()))
        copied = view.newest_frame() if view is not None else None
        if copied is None:
            raise TeachRefused("no picture from the camera yet: wait for it")
        return {"name": self._desk.add_sample(place, str(request.get("class", "")), copied[0]), "frame": copied[1]}

    def upload(self, place: Place, label: str, body: bytes) -> str:
        if not body:
            raise ConfigError("the photo is empty")
        self._desk.class_dir(place, label)  # a bad class name is refused before the photo is looked at
        decoded = decode_data(body, UPLOAD_HINTS)  # the media checks every image file goes through
        if decoded.image is None or decoded.truncated:
            raise ConfigError(f"the photo cannot be used: {decoded.problem or 'truncated'}")
        return self._desk.add_sample(place, label, np.ascontiguousarray(decoded.image), whole_frame=False)

    def delete(self, place: Place, request: dict[str, Any]) -> dict[str, object]:
        name = request.get("name")
        return {"deleted": self._desk.delete(place, str(request.get("class", "")), None if name is None else str(name))}

    def train(self, place: Place, request: dict[str, Any]) -> dict[str, object]:
        base = request.get("base")
        self._desk.start_training(place, None if base in (None, "") else str(base))
        return {"started": True}

    def use(self, place: Place, request: dict[str, Any]) -> dict[str, object]:
        return {"model": Path(self._desk.use(place)).name}

    def revert(self, place: Place, request: dict[str, Any]) -> dict[str, object]:
        self._desk.revert(place)
        return {"reverted": True}


ACTIONS: dict[str, Callable[[TeachApi, Place, dict[str, Any]], dict[str, object]]] = {
    "/api/teach/capture": TeachApi.capture, "/api/teach/delete": TeachApi.delete, "/api/teach/train": TeachApi.train,
    "/api/teach/use": TeachApi.use, "/api/teach/revert": TeachApi.revert}


def first(query: Mapping[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[-1] if values else None


def place_from(camera: object, region: object) -> Place:
    if not all(name is None or isinstance(name, str) for name in (camera, region)):
        raise ConfigError("camera and region must be names")
    return (camera or None, region or None)  # type: ignore[return-value]
