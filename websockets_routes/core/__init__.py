"""The sans-IO core: routing, handshake decisions, the connection driver and the
session policy every transport carries out.

Nothing here does I/O or imports an async library; every transport builds on it.
The names below are the stable public core API (docs/api.md).
"""

from .actions import (
    WAKE_ONLY,
    AbortTCP,
    Action,
    Actions,
    ArmTimer,
    CancelHandler,
    CancelResolve,
    CloseTCP,
    CompletePing,
    HalfCloseTCP,
    NotifyClosed,
    PauseReading,
    Resolve,
    ResumeReading,
    StartHandler,
    WakeReceiver,
    Write,
)
from .connection import ServerConnection, State
from .decisions import Accept, Close, Decision, Respond, ServeHTTP
from .drain import ServerShutdown, check_drain, drain_schedule
from .errors import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from .handshake import accept_key, decide, resolve
from .http import Headers, Request
from .limits import ConnectionLimit
from .naming import peer_name, route_name
from .observe import Observer
from .options import ServerOptions
from .paths import RoutedPath
from .router import FunctionView, Route, Router
from .server import BaseServer
from .session import Session
from .websocket import MessageIteration, SessionAttributes

__all__ = [
    "WAKE_ONLY",
    "AbortTCP",
    "Accept",
    "Action",
    "Actions",
    "ArmTimer",
    "BaseServer",
    "CancelHandler",
    "CancelResolve",
    "Close",
    "CloseTCP",
    "ConnectionLimit",
    "CompletePing",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Decision",
    "FunctionView",
    "HalfCloseTCP",
    "Headers",
    "MessageIteration",
    "NotifyClosed",
    "Observer",
    "PauseReading",
    "Request",
    "Resolve",
    "Respond",
    "ResumeReading",
    "Route",
    "RoutedPath",
    "Router",
    "ServeHTTP",
    "ServerConnection",
    "ServerOptions",
    "ServerShutdown",
    "Session",
    "SessionAttributes",
    "StartHandler",
    "State",
    "WakeReceiver",
    "Write",
    "accept_key",
    "check_drain",
    "decide",
    "drain_schedule",
    "peer_name",
    "resolve",
    "route_name",
]
