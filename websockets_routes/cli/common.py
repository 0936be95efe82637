"""What every command of the command line shares: the usage error, loading a router,
the transports and the extras their libraries come with."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from typing import Any, NoReturn

from ..core import Router

TRANSPORTS = ("asyncio", "trio", "anyio", "websockets")
DRAINING = ("asyncio", "trio", "anyio")  # transports whose server has close(drain=)
OWN_SERVERS = DRAINING  # transports served by our own servers (ServerOptions)
DEFAULT_DRAIN = 10.0
DEFAULT_CLOSE_TIMEOUT = 10.0  # ServerOptions.close_timeout: the CLI does not change it
INTERRUPTED = 128 + signal.SIGINT  # exit status after a second SIGINT
ACCESS_LOGGER = "websockets_routes.access"
NO_LIMIT = ("0", "none")  # what --max-size, --ping-interval, --ping-timeout take for None

# The library each transport (or --uvloop) needs, and the extra that installs it.
NEEDS = {
    "trio": ("trio", "trio"),
    "websockets": ("websockets.asyncio.server", "websockets"),
    "uvloop": ("uvloop", "uvloop"),
}


class UsageError(Exception):
    """A mistake on the command line; the message is the one line shown."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def load_router(spec: str) -> Router:
    """Import ``package.module:attr`` (dots allowed in attr) and check it is a Router."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected MODULE:ATTRIBUTE (e.g. app:router), got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like uvicorn: apps in the current directory
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import module {module_name!r}: {exc}") from None
    except Exception as exc:
        raise UsageError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, Router):
        raise UsageError(f"{spec} is a {type(obj).__name__}, not a websockets_routes.Router")
    return obj
