"""Outputs: the pipeline's subscribers. The aggregator publishes each message once;
every output takes the kinds of message it subscribes to, with its own overflow
policy, and every drop is counted (and exported as a metric).

- BLOCK: never drops. The queue is unbounded; the consumer bounds its own memory
  (the database writer keeps at most max_pending bars and spools the rest).
- DROP: best effort. A full queue drops the message and counts it (sentiment:
  bars never wait for scores).

Adding a publisher - a cache, a message bus, a live page - is one more Output
and a worker that reads its queue.
"""

import enum
import queue


class Policy(enum.Enum):
    BLOCK = "block"
    DROP = "drop"


class Output:
    def __init__(
        self,
        name: str,
        accepts: tuple[type, ...],
        policy: Policy,
        maxsize: int = 0,
    ) -> None:
        if policy is Policy.DROP and maxsize <= 0:
            raise ValueError("a dropping output needs a bounded queue")
        self.name = name
        self.accepts = accepts
        self.policy = policy
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.dropped = 0  # messages dropped (DROP only)

    def offer(self, message) -> None:
        if not isinstance(message, self.accepts):
            return
        if self.policy is Policy.BLOCK:
            self.queue.put(message)
            return
        try:
            self.queue.put_nowait(message)
        except queue.Full:
            self.dropped += 1


class Fanout:
    """Publishes each message to every output that subscribes to its kind."""

    def __init__(self, outputs: list[Output]) -> None:
        self.outputs = list(outputs)

    def publish(self, message) -> None:
        for output in self.outputs:
            output.offer(message)

    def get(self, name: str) -> Output:
        return next(output for output in self.outputs if output.name == name)
