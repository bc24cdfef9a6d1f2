"""The errors zkv raises to its users. Every one derives from ``ZkvError``."""

from __future__ import annotations


class ZkvError(Exception):
    """Base class of every error zkv raises on purpose."""


class InvalidRequest(ZkvError, ValueError):
    """The request itself is wrong (type, size, quorum); nothing was written."""


class QuorumError(ZkvError):
    """Too few replicas answered before the deadline."""

    def __init__(self, message: str, answered: int = 0, needed: int = 0) -> None:
        super().__init__(message)
        self.answered = answered
        self.needed = needed


class Timeout(ZkvError):
    """No node of the cluster answered in time (not even to hand out the partition map)."""


class Unavailable(ZkvError):
    """The cluster could not take the request now (a node is overloaded or shutting down)."""


class ClientClosed(ZkvError):
    """The client was closed while the request was pending."""
