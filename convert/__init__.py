"""The converter: a trained Keras ResNet-50 → a validated full-int8 TFLite model and its model card.

A workstation tool (it needs TensorFlow); run it as ``python -m convert MODEL.keras --calibration DIR --out
OUT.tflite``. Stages, one module each: ``source`` (load and check the Keras model), ``labels``, ``dataset``
(list, sample and prepare images with the edge's own ``prepare``), ``wrap`` (pixel input → caffe → model),
``export`` (SavedModel → TFLite, int8 and float), ``validate`` (float vs int8 figures), ``card`` (the model
card), ``pipeline`` (the stages in order, outputs written atomically).
"""
