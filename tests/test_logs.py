"""Log lines: a repeated warning is written once per interval, items always."""

import io
import logging

from edge.service.logs import LINE, RepeatFilter


def test_a_repeated_error_is_written_once_per_interval_and_items_always():
    now = [0.0]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LINE))
    handler.addFilter(RepeatFilter(interval=60, clock=lambda: now[0]))
    logger = logging.getLogger("test.repeat")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        for i in range(1000):
            logging.getLogger("test.repeat").error("socket.accept() out of system resource")
            logger.info("item %d: paper → paper [sorted]", i)
            now[0] += 0.02  # 1000 in 20 s
        now[0] = 61.0
        logger.error("socket.accept() out of system resource")
        logger.error("another error")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    errors = [line for line in lines if line.startswith("ERROR")]
    assert errors == ["ERROR test.repeat: socket.accept() out of system resource",
                      "ERROR test.repeat: socket.accept() out of system resource (999 repeats of this line held back)",
                      "ERROR test.repeat: another error"]
    assert sum(line.startswith("INFO") for line in lines) == 1000
