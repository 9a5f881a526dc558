"""Primitives every thread of the collector shares, whatever its layer (the
collector shell, the sentiment workers): the Worker base, the Clock, rate-limited
logging."""
