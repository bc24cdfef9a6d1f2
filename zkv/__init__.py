"""zkv: a distributed, replicated, partitioned key-value store on ZeroMQ.

    from zkv import Client
    with Client(["127.0.0.1:8080"]) as c:
        c.set("user:123", "John")
        c.get("user:123")
"""

from zkv.client import AsyncClient, Client, PartialFailure
from zkv.errors import ClientClosed, InvalidRequest, QuorumError, Timeout, Unavailable, ZkvError

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Client",
    "ClientClosed",
    "InvalidRequest",
    "PartialFailure",
    "QuorumError",
    "Timeout",
    "Unavailable",
    "ZkvError",
    "__version__",
]
