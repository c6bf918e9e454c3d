"""PiDNG's writer: only the name picamera2 imports (request.py:15)."""


class PICAM2DNG:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("PiDNG is a stand-in here: no DNG files")
