"""Every thread's stack in the log when the watchdog gives up on the sorter (SIGABRT), without risking a crash.

faulthandler dumps from inside the signal handler, reading other threads' state while they run native code
(camera, interpreter, web server): a fault run saw that end in SIGSEGV, with the main thread's stack lost.
Here Python's own handler takes SIGABRT and writes it to a wake-up pipe (async-signal-safe, from whichever
thread the kernel picked); a thread waiting on that pipe formats every stack as Python does
(``sys._current_frames`` under the GIL, also while the main thread hangs in native code), logs it line by line
at CRITICAL, then aborts (``abort()`` ends the process with SIGABRT whatever handler is set). ``install`` runs
in the main thread. A crash of native code (SIGSEGV, SIGBUS…) is still reported by faulthandler, for the
crashing thread only.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
import traceback

logger = logging.getLogger("smartbin.watchdog")

SIGNAL = signal.SIGABRT


def install() -> None:
    """Take SIGABRT with the stack-dumping thread (main thread only; replaces faulthandler's dump for it)."""
    faulthandler.enable(all_threads=False)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.signal(SIGNAL, lambda signum, frame: None)  # the work is done by the thread, not the main thread
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=_wait, args=(read_fd,), name="stack-dump", daemon=True).start()


def _wait(wakeup: int) -> None:
    while SIGNAL not in os.read(wakeup, 64):  # one byte per signal caught: SIGTERM and SIGINT come here too
        pass
    logger.critical("SIGABRT (the watchdog: no frame for WatchdogSec, or a kill -ABRT): every thread's stack:")
    for line in stack_lines():
        logger.critical("%s", line)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.abort()


def stack_lines() -> list[str]:
    """One line per frame of every thread, innermost last, prefixed with the thread's name."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    lines = []
    for ident, frame in sys._current_frames().items():
        name = names.get(ident, f"thread {ident}")
        for entry in traceback.extract_stack(frame):
            lines.append(f"{name}: {entry.filename}:{entry.lineno} in {entry.name}: {entry.line or ''}".rstrip(": "))
    return lines
