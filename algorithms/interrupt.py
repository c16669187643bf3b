"""Ctrl-C during training: stop at the next chunk boundary, not inside a compiled call (nor inside a compilation)."""
from __future__ import annotations

import signal
import sys
import threading


class DeferredInterrupt:
    """While training, the first Ctrl-C asks to stop at the next chunk boundary (an interrupted XLA call can leave
    the process unable to exit cleanly); a second one raises ``KeyboardInterrupt`` at once.

    A context manager, entered before anything is compiled, so that a Ctrl-C while XLA compiles waits for
    the next boundary too. It installs its handler only over Python's default SIGINT handler on the main
    thread (a custom or ignored SIGINT, e.g. under ``nohup``, is left as it is). ``write(text)`` prints
    the notice (``tqdm.write``, so that a progress bar stays intact; default: to stderr).
    """

    def __init__(self, write=None):
        self.write = write or (lambda text: print(text, file=sys.stderr))
        self.requested, self.previous = False, None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.write("stopping after this chunk (Ctrl-C again to stop now)")

    def __enter__(self):
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # leave custom or ignored SIGINT be
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def stop_requested(self) -> bool:
        """Whether Ctrl-C was pressed. A call, so that a signal another thread received has run its handler
        (CPython runs pending handlers on the main thread when a Python function starts)."""
        return self.requested

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False
