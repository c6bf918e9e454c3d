"""Frame sources. `registry` maps the config's `source.type` to a backend; each backend's config
lives beside its code. Importing this package imports no backend (Picamera2, OpenCV capture)."""
