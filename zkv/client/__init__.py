"""The zkv client: ``Client`` (sync, futures and batch calls) and ``AsyncClient``."""

from zkv.client.aio import AsyncClient
from zkv.client.client import Client, PartialFailure, parse_nodes

__all__ = ["AsyncClient", "Client", "PartialFailure", "parse_nodes"]
