"""The EODHD-compatible feed simulator: a demo and test tool, shipped with the
product (`--demo`, `simulate_eodhd_feed`) but not part of the collector."""

from api.simulator.server import AUTHORIZED, FeedServer, SimOptions

__all__ = ["AUTHORIZED", "FeedServer", "SimOptions"]
