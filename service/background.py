"""The embedded default's background loops: one daemon-thread shape for the sealer's helpers.

Owns: when a loop runs its step (every ``interval`` seconds, at once after ``poke()``), stopping, and what a
failing step does (logged with its traceback and counted in ``errors``; the loop goes on: an outage of a TSA, a
witness or a webhook endpoint only delays work). ``rounds`` counts finished steps, for tests and diagnostics.
The time-stamper, the witness submitter and the webhook dispatcher are such loops; each says what one step does.
Must not import: Flask or Celery.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class Loop(threading.Thread):
    """Runs ``step()`` until ``stop()``: then waits ``next_wait()`` seconds or until ``poke()``.

    Subclasses set ``what`` (named in the log when a step fails) and implement ``step``; ``start_loop`` may
    refuse to start (returns False), ``next_wait`` may shorten the wait, ``after_stop`` releases resources.
    """

    what = "background step"

    def __init__(self, name: str, interval: float) -> None:
        super().__init__(name=name, daemon=True)
        self.interval = interval
        self.rounds = 0
        self.errors = 0
        self._stop_event = threading.Event()
        self._wake = threading.Event()

    # --- what a loop says about itself ------------------------------------------------------------------------

    def step(self) -> object:
        raise NotImplementedError

    def start_loop(self) -> bool:
        """Called once in the thread before the first step; False ends the thread (the reason is logged)."""
        return True

    def next_wait(self) -> float:
        return self.interval

    def after_stop(self) -> None:
        """Called by ``stop()`` once the thread has finished (or the timeout passed)."""

    # --- the loop ------------------------------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    def poke(self) -> None:
        """Run the next step now instead of after the wait."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the loop to finish its step and wait for it (at most ``timeout`` seconds)."""
        self._stop_event.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout)
        self.after_stop()

    def pause(self, seconds: float) -> None:
        """Sleep ``seconds`` unless stopped (a poke does not end it)."""
        self._stop_event.wait(max(0.0, seconds))

    def run(self) -> None:
        if not self.start_loop():
            return
        while not self._stop_event.is_set():
            self.run_step()
            self._wake.wait(max(0.0, self.next_wait()))
            self._wake.clear()

    def run_step(self) -> object | None:
        """One step; its result, or None if it failed (logged and counted, never raised)."""
        try:
            return self.step()
        except Exception:
            self.errors += 1
            log.exception("%s failed; retrying in %.1f s", self.what, self.interval)
            return None
        finally:
            self.rounds += 1
