"""The zkv client: ``Client`` (sync, futures and batch calls) and ``AsyncClient``."""

from zkv.client.client import Client, PartialFailure, parse_nodes

__all__ = ["Client", "PartialFailure", "parse_nodes"]
