"""One base for every collector thread: a name, a shared stop event, and an error
policy. A worker that dies unexpectedly logs its traceback and stops the whole
collector, which then exits non-zero so a supervisor restarts it; no thread dies
silently."""

import logging
import threading

logger = logging.getLogger(__name__)


class Worker(threading.Thread):
    """Subclasses implement `work()`; it returns when `self.stop` is set."""

    def __init__(self, name: str, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.stop = stop
        self.failure: BaseException | None = None

    def work(self) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        """Runs on the worker's own thread after work(), however it ended."""

    def run(self) -> None:
        try:
            self.work()
        except BaseException as exc:
            self.failure = exc
            logger.exception("❌ %s crashed; stopping the collector", self.name)
            self.stop.set()
        finally:
            try:
                self.cleanup()
            except Exception:
                logger.exception("❌ %s failed while cleaning up", self.name)
