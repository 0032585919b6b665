"""The server's connections: deadlines for slow clients, caps on open connections and on bodies
being received, the idle and the slowest shed first.

uvicorn's own limits count connections, not work: with `limit_concurrency` a few dozen clients
that connect and send nothing (or half a request line) make every other request a 503, and
nothing ever closes them, since its keep-alive timeout only runs between two requests and any
byte resets it. This protocol (uvicorn's h11 one, subclassed) gives every connection a phase
and a deadline for it:

    waiting for a request   the whole request head must arrive within `head_seconds` of the
                            connection opening or the last response ending, however it trickles
    receiving the body      the body must arrive within `body_seconds` of the head
    being answered          no deadline here: the app bounds its own work (and SSE streams are
                            meant to stay open)

and two caps, each making room the same way, by closing the connection that has been in its
phase longest:
- at most `max_connections` open: the one that waited longest for a request makes room for a
  new one (a browser reopens a closed keep-alive connection at once; an idle attacker's
  connection is worth nothing), and if none waits, the new connection is closed at once;
- at most `max_receiving` bodies arriving at once (each may grow to the app's upload limit, so
  this bounds their memory): the body that has been arriving longest, the slowest, is dropped
  (its request ends as a client that went away).
So neither idle nor half-sent connections block a request, and open connections stay below the
file-descriptor limit. Requests being answered are bounded by the app (app.Guard: at most
`max_requests` at once, each counted from the moment its body has arrived, not before).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

from uvicorn.protocols.http.h11_impl import H11Protocol

WAITING, RECEIVING, ANSWERING = "waiting for a request", "receiving the body", "being answered"


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 1000
    head_seconds: float = 10.0       # a browser sends its request head in well under 0.1 s
    body_seconds: float = 60.0       # 8 MiB (the largest picture) at 140 KB/s
    max_receiving: int = 32          # bodies arriving at once: 32 x 8 MiB at most in memory
    keep_alive_seconds: int = 5      # an idle keep-alive connection is closed after this long
    max_head_bytes: int = 16 * 1024  # request line and headers (h11's default, stated)


class _Oldest:
    """The connections in one phase, the one there longest first (one per phase and server)."""

    def __init__(self):
        self.connections: OrderedDict[GuardedH11Protocol, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self.connections)

    def add(self, connection: GuardedH11Protocol) -> None:
        self.connections[connection] = None

    def discard(self, connection: GuardedH11Protocol) -> None:
        self.connections.pop(connection, None)

    def oldest(self) -> GuardedH11Protocol | None:
        return next(iter(self.connections), None)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with per-phase deadlines and a connection cap (see the module note).

    Use protocol_class(limits): each server needs its own registries of waiting and receiving connections.
    """

    limits: ConnectionLimits = ConnectionLimits()
    waiting: _Oldest = _Oldest()         # waiting for a request
    receiving: _Oldest = _Oldest()       # receiving a body

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.phase: str | None = None
        self.deadline: asyncio.TimerHandle | None = None
        if len(self.connections) > self.limits.max_connections:
            oldest = self.waiting.oldest()
            if oldest is None:                 # every connection is busy: this one waits for nothing
                self.transport.close()
                return
            oldest.close()
        self.follow()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self.enter(None)
        super().connection_lost(exc)

    def follow(self) -> None:
        """Move to the phase the request cycle is in now (uvicorn's state tells which)."""
        if self.transport.is_closing():
            self.enter(None)
        elif self.cycle is None or self.cycle.response_complete:
            self.enter(WAITING)
        elif self.cycle.more_body and not self.cycle.disconnected:
            self.enter(RECEIVING)
        else:
            self.enter(ANSWERING)

    def enter(self, phase: str | None) -> None:
        """Start `phase` with its deadline; staying in the same phase keeps the deadline running."""
        if phase == getattr(self, "phase", None):
            return
        self.phase = phase
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        for registry, its_phase in ((self.waiting, WAITING), (self.receiving, RECEIVING)):
            if phase == its_phase:
                registry.add(self)
            else:
                registry.discard(self)
        if phase == RECEIVING and len(self.receiving) > self.limits.max_receiving:
            self.receiving.oldest().close()      # the slowest body makes room
        seconds = {WAITING: self.limits.head_seconds, RECEIVING: self.limits.body_seconds}.get(phase)
        if seconds is not None:
            self.deadline = self.loop.call_later(seconds, self.expire, phase)

    def expire(self, phase: str) -> None:
        self.deadline = None
        if self.phase == phase:
            self.close()

    def close(self) -> None:
        """Close the connection; the app, if it is reading the body, sees the client disconnect."""
        self.enter(None)
        if not self.transport.is_closing():
            self.transport.close()


def protocol_class(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """A GuardedH11Protocol for one server: these limits and its own registries of connections."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"limits": limits, "waiting": _Oldest(), "receiving": _Oldest()})
