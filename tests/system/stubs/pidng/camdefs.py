"""PiDNG's camera definitions: only the name picamera2 imports (request.py:14)."""


class Picamera2Camera:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("PiDNG is a stand-in here: no DNG files")
