"""Making models: `edge-infer models build` (Keras MobileNets to TFLite, build.py).

It sits above the inference core: calibration images are preprocessed exactly as a run preprocesses
frames, so a built model sees in training what it will see at run time.
"""
