"""smartbin edge runtime: camera → preprocess → classify → decide → actuate → record.

This package runs on the Raspberry Pi and never imports TensorFlow or Keras.
"""

__version__ = "0.1.0"
