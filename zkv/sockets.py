"""ZeroMQ socket set-up shared by the node actor and the client."""

from __future__ import annotations

import zmq

RECONNECT_MS = 100
RECONNECT_MS_MAX = 1000


def connect_dealer(context: zmq.Context, address: str, send_hwm: int, receive_hwm: int) -> zmq.Socket:
    """A DEALER to "host:port" that never queues towards a peer it is not connected to.

    ZMQ_IMMEDIATE makes a send to a dead or unreachable peer fail at once (EAGAIN),
    so a quorum request counts that replica as failed instead of waiting; linger 0
    drops unsent frames on close; the high-water marks bound the queues.
    """
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.IMMEDIATE, 1)
    dealer.setsockopt(zmq.SNDHWM, send_hwm)
    dealer.setsockopt(zmq.RCVHWM, receive_hwm)
    dealer.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
    dealer.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_MS_MAX)
    dealer.connect(f"tcp://{address}")
    return dealer
