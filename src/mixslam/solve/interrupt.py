"""Ctrl-C (SIGINT) and SIGTERM as a request to stop a solve at the end of its current iteration.

Inside :func:`handle_interrupts` the first SIGINT or SIGTERM only sets a flag; the Levenberg-Marquardt loop
checks it after each iteration and returns its best iterate with status ``interrupted``, so the caller can
still write it. A second signal while the flag is set raises :class:`KeyboardInterrupt` at once (abort now,
nothing written), as a second Ctrl-C does in most tools. On exit the previous handlers come back and the
flag is cleared.

A signal the process ignores (started by ``nohup``, or with ``&`` from a non-interactive shell) stays ignored.
Handlers can only be installed in the main thread: elsewhere (a worker thread, a library user's thread)
:func:`handle_interrupts` does nothing and the solve runs to its end. Outside the context manager nothing
is installed and Python's default (KeyboardInterrupt) applies.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = [
    "handle_interrupts",
    "interrupt_requested",
    "interrupt_signal",
    "request_interrupt",
    "sigterm_as_keyboard_interrupt",
]

#: The signals handled: Ctrl-C and the polite "please stop" of kill / process managers.
SIGNALS = (signal.SIGINT, signal.SIGTERM)

_received: list[int] = []  # the signals received since the flag was last cleared (empty: none)


def interrupt_requested() -> bool:
    """True once a handled signal arrived (or :func:`request_interrupt` was called) inside the context."""
    return bool(_received)


def interrupt_signal() -> int | None:
    """The number of the first signal received, or None."""
    return _received[0] if _received else None


def request_interrupt(signum: int = signal.SIGINT) -> None:
    """Set the flag as the signal ``signum`` would (for tests and for callers with their own event loop)."""
    _received.append(int(signum))


def _handler(signum, frame) -> None:
    if _received:  # the second signal: abort now
        raise KeyboardInterrupt
    _received.append(int(signum))


@contextlib.contextmanager
def handle_interrupts() -> Iterator[None]:
    """Install the flag-setting handlers for SIGINT and SIGTERM (main thread only); restore the old ones on
    exit and clear the flag. Nested use keeps the outer handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    if any(h is _handler for h in previous.values()):  # nested: the outer context owns the handlers
        yield
        return
    _received.clear()
    try:
        for s in SIGNALS:
            if previous[s] is not signal.SIG_IGN:  # an ignored signal stays ignored (nohup, `cmd &` in scripts)
                signal.signal(s, _handler)
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        _received.clear()


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_keyboard_interrupt() -> Iterator[None]:
    """Inside, SIGTERM raises :class:`KeyboardInterrupt` as SIGINT does (main thread only), so ``kill`` gets
    the same clean stop as Ctrl-C (batch work cancelled, worker processes ended) instead of an abrupt exit
    that would leave the workers behind. :func:`handle_interrupts` takes over inside a solve."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
