"""picamera2/devices/imx500/postprocess.py: softmax only."""

import numpy as np


def softmax(x):  # postprocess.py:401-404
    y = np.exp(x - np.expand_dims(np.max(x, axis=-1), axis=-1))
    z = y / np.expand_dims(np.sum(y, axis=-1), axis=-1)
    return z
