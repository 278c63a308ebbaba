"""Binding the relay's ports before anything starts (no metrics imports here: ``serve``
binds before it chooses where the metrics are kept)."""

from __future__ import annotations

import socket


class PortInUse(Exception):
    """A port cannot be bound; the message says which and why, in one line."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound, not yet listening, TCP socket: a taken port fails here, before the relay
    starts anything, and a client connecting before the server serves is refused rather
    than left waiting. Not inherited by the delivery process."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock
