"""Offline benchmark: how fast and how accurate a model is on this machine, before it is deployed.

``smartbin bench --model M.tflite --images DIR`` runs one or more models on the same labelled photos and writes
a terminal table, ``report.json``, ``report.md``, a per-image CSV per model and PNG plots. Edge runtime only
(no TensorFlow), so it runs on the Pi itself.

    dataset.py        the images: class sub-folders, an optional split manifest, an optional cap
    model_info.py     what the runtime made of a model: XNNPACK delegation, activation and weight memory
    platform_info.py  what the machine is: board, CPU, cores, governor, load, versions
    timing.py         one timed pass of one model at one thread count over every image
    accuracy.py       top-1/top-3, F1, per-class precision/recall, confusion, the confidence threshold
    bins.py           what lands where under a decision rule: purity, recall, hazardous leak, rejects, cost
    runner.py         cold starts, the passes, the report
    report.py         report.json, report.md, the terminal tables, the per-image CSV
    plots.py          latency, confusion matrices, accuracy vs threshold, reject rate vs purity (matplotlib)
    command.py        the ``smartbin bench`` arguments
    tune.py           ``smartbin tune``: the reject cost and quarantine that meet a target on labelled photos

The line and the service, as benchmarks that print figures (``python -m edge.bench.NAME``):

    loop.py           the sorting loop's per-stage latency against bare invokes
    conveyor.py       the whole line on the belt simulator at several speeds (``edge.conveyor_benchmark``)
    simulation.py     runs the sorter on the simulator and reads which bin each item reached
    records_scale.py  ``smartbin status`` and the web API on 1, 5 and 10 million records; bytes written per item
    memory.py         RSS of a running sorter with the web page on, and where it goes
    soak.py           a long run of ``smartbin run``: RSS, open files, threads and frames/s over time
    frame_memory.py   peak RSS a camera size costs, keeping up and with the backlog full, against the bound
"""
