"""The inference core: capture thread and hand-off, preprocessing, the classifier, postprocessing, the loop.

Nothing here opens a camera, a broker or a config file: sources and outputs are handed in, so
importing the core pulls in neither paho-mqtt, PyYAML nor any source backend.
"""
