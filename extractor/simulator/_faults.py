"""Latency and injected faults: what a difficult tenant does to a client.

Per data request (never the token endpoint, so a fault never hides behind an
authentication failure) the simulator may:

* wait: ``latency_ms`` +/- ``jitter_ms``, plus ``slow_tail_ms`` with probability
  ``slow_tail_prob``;
* answer 500, 502 or 503 with the kind of body a gateway sends (``error_rate``);
* abort the TCP connection with an RST and no response (``reset_rate``);
* send status 200 with the JSON body cut short and a Content-Length that matches
  the cut, so the client reads syntactically invalid JSON (``truncate_rate``);
* hold the response for ``stall_seconds`` before answering (``stall_rate``).

Errors and resets happen before the handler runs (a write is not applied);
a truncated answer is cut after it (the write was applied, the reply is lost),
which is the ambiguity a real client has to live with.
"""

from __future__ import annotations

import random
import socket
import struct
from contextlib import suppress

from aiohttp import web

from ._config import SimulatorConfig

__all__ = ["FaultInjector", "abort_connection", "truncated"]

_ERROR_BODIES: tuple[tuple[int, bytes, str], ...] = (
    (500, b'{"message":"An unexpected error occurred"}', "application/json"),
    (
        502,
        b"<html><head><title>502 Bad Gateway</title></head>"
        b"<body><h1>502 Bad Gateway</h1></body></html>",
        "text/html",
    ),
    (503, b'{"message":"Service Unavailable"}', "application/json"),
)


class FaultInjector:
    """Draws latencies and faults from the simulator's own seeded random stream."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed * 7919 + 17)

    def delay(self, config: SimulatorConfig) -> float:
        """Seconds to wait before answering (0.0 with the default knobs)."""
        millis = config.latency_ms
        if config.jitter_ms:
            millis += self._random.uniform(-config.jitter_ms, config.jitter_ms)
        if config.slow_tail_prob and self._random.random() < config.slow_tail_prob:
            millis += config.slow_tail_ms
        return max(0.0, millis) / 1000.0

    def pick(self, config: SimulatorConfig) -> str | None:
        """The fault for this request, or None: "error", "reset", "truncate" or "stall"."""
        if not (
            config.error_rate or config.reset_rate or config.truncate_rate or config.stall_rate
        ):
            return None
        draw = self._random.random()
        for kind, rate in (
            ("error", config.error_rate),
            ("reset", config.reset_rate),
            ("truncate", config.truncate_rate),
            ("stall", config.stall_rate),
        ):
            if draw < rate:
                return kind
            draw -= rate
        return None

    def error_response(self) -> web.Response:
        status, body, content_type = self._random.choice(_ERROR_BODIES)
        return web.Response(status=status, body=body, content_type=content_type)

    def cut(self, length: int) -> int:
        """Where to cut a body of ``length`` bytes: at least one byte kept, at least one lost."""
        return self._random.randint(1, max(1, length - 1))


def abort_connection(request: web.BaseRequest) -> None:
    """Drop the client's connection with a TCP RST and send nothing."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # SO_LINGER with a zero timeout turns close() into an RST: the client sees a reset.
        with suppress(OSError, AttributeError, TypeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def truncated(response: web.Response, cut_at: int) -> web.Response:
    """Status 200 with the first ``cut_at`` bytes of the body (a prefix of JSON is not JSON)."""
    body = response.body
    assert isinstance(body, bytes)
    return web.Response(status=200, body=body[:cut_at], content_type="application/json")
