"""The services' settings, from their environment, checked before anything connects.

A bad value stops the process with one line that names the variable, the value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from alchemy_services.protocol import Dialect

DEFAULT_ROUTER_PORT = 8080
DEFAULT_ROUTER_TIMEOUT_SECONDS = 30.0
MAX_ROUTER_TIMEOUT_SECONDS = 300.0
# Every address of its container: the router is the node's HTTP entry point.
DEFAULT_ROUTER_HOST = "0.0.0.0"


class SettingsError(ValueError):
    """A missing or malformed environment variable."""


@dataclass(frozen=True)
class ServiceSettings:
    """What every service needs: where its broker is, with its own credentials."""

    amqp_uri: str


@dataclass(frozen=True)
class RouterSettings(ServiceSettings):
    """The router's settings."""

    port: int = DEFAULT_ROUTER_PORT
    """TCP port of the HTTP listener (``ROUTER_PORT``)."""
    host: str = DEFAULT_ROUTER_HOST
    """Address the HTTP listener binds (``ROUTER_HOST``): every address of its container by default."""
    timeout_seconds: float = DEFAULT_ROUTER_TIMEOUT_SECONDS
    """How long a request may wait for its reply before the router answers 408 (``ROUTER_TIMEOUT_SECONDS``)."""
    request_dialect: Dialect = Dialect.MSGPACK
    """How the router encodes requests (``ROUTER_REQUEST_DIALECT``): services answer only their own."""


def _amqp_uri(environ: Mapping[str, str]) -> str:
    uri = environ.get("AMQP_URI", "")
    if not uri.startswith(("amqp://", "amqps://")):
        raise SettingsError(
            f"AMQP_URI={uri!r}: must be an amqp:// or amqps:// URI with the service's own user and password, "
            "the broker's host and port, and the vhost (%2F for /)"
        )
    return uri


def service_settings(environ: Mapping[str, str]) -> ServiceSettings:
    """A service's settings from its environment."""
    return ServiceSettings(amqp_uri=_amqp_uri(environ))


def router_settings(environ: Mapping[str, str]) -> RouterSettings:
    """The router's settings from its environment; unset variables take their defaults."""
    port_text = environ.get("ROUTER_PORT", str(DEFAULT_ROUTER_PORT))
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise SettingsError(f"ROUTER_PORT={port_text!r}: must be a TCP port, an integer from 1 to 65535")
    timeout_text = environ.get("ROUTER_TIMEOUT_SECONDS", str(DEFAULT_ROUTER_TIMEOUT_SECONDS))
    try:
        timeout = float(timeout_text)
    except ValueError:
        timeout = math.nan
    if not 0 < timeout <= MAX_ROUTER_TIMEOUT_SECONDS:
        raise SettingsError(
            f"ROUTER_TIMEOUT_SECONDS={timeout_text!r}: must be a number of seconds greater than 0 "
            f"and at most {MAX_ROUTER_TIMEOUT_SECONDS:.0f}"
        )
    dialect_text = environ.get("ROUTER_REQUEST_DIALECT", Dialect.MSGPACK.value)
    allowed = ", ".join(d.value for d in Dialect)
    try:
        dialect = Dialect(dialect_text)
    except ValueError:
        raise SettingsError(f"ROUTER_REQUEST_DIALECT={dialect_text!r}: must be one of {allowed}") from None
    host = environ.get("ROUTER_HOST", DEFAULT_ROUTER_HOST)
    if not host:
        raise SettingsError("ROUTER_HOST='': must be an address to listen on, e.g. 0.0.0.0 or 127.0.0.1")
    return RouterSettings(
        amqp_uri=_amqp_uri(environ),
        port=int(port_text),
        host=host,
        timeout_seconds=timeout,
        request_dialect=dialect,
    )
