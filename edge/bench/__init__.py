"""Offline benchmark: how fast and how accurate a model is on this machine, before it is deployed.

``smartbin bench --model M.tflite --images DIR`` runs one or more models on the same labelled photos and writes
a terminal table, ``report.json``, ``report.md``, a per-image CSV per model and PNG plots. Edge runtime only
(no TensorFlow), so it runs on the Pi itself.

    dataset.py        the images: class sub-folders, an optional split manifest, an optional cap
    model_info.py     what the runtime made of a model: XNNPACK delegation, activation and weight memory
    platform_info.py  what the machine is: board, CPU, cores, governor, load, versions
    timing.py         one timed pass of one model at one thread count over every image
    accuracy.py       top-1/top-3, F1, per-class precision/recall, confusion, the confidence threshold
    runner.py         cold starts, the passes, the report
    report.py         report.json, report.md, the terminal tables, the per-image CSV
    plots.py          latency distribution, confusion matrices, accuracy vs threshold (needs matplotlib)
    command.py        the ``smartbin bench`` arguments
"""
