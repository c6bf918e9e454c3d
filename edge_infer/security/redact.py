"""Secrets kept out of everything the program says: a URL's user information (`rtsp://user:password@host`).

Camera URLs carry their passwords in the URL, and a URL is what a log line, an error or a status names a
source by. `redact` is applied where a URL becomes a description (sources) and, as a net for what a
library puts in its messages, to every log line and to `doctor`'s report.
"""

from __future__ import annotations

import re

# Everything between "scheme://" and the last "@" before the path: a password may hold an unescaped "@",
# "?" or "#", and FFmpeg (libavformat/utils.c, av_url_split) takes the host after the last "@" as well.
USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s]*@")


def redact(text: str) -> str:
    """`text` with the user information of every URL in it replaced by `***`."""
    return USERINFO.sub(r"\1***@", text)
