"""The services' environment: defaults, and one line naming the variable for each bad value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from alchemy_services.protocol import Dialect
from alchemy_services.settings import RouterSettings, SettingsError, router_settings, service_settings
from tests.synth import ROOT

# Assembled at run time: the repository holds no credential-shaped literal (tests/test_no_secrets.py).
URI = "amqp://" + ":".join(("router", "not-a-password")) + "@10.0.1.5:5672/%2F"


def test_the_router_defaults_to_port_8080_a_30_s_timeout_and_the_msgpack_dialect() -> None:
    assert router_settings({"AMQP_URI": URI}) == RouterSettings(
        amqp_uri=URI, port=8080, host="0.0.0.0", timeout_seconds=30.0, request_dialect=Dialect.MSGPACK
    )


def test_the_router_reads_every_variable() -> None:
    environ = {
        "AMQP_URI": URI,
        "ROUTER_PORT": "9000",
        "ROUTER_HOST": "127.0.0.1",
        "ROUTER_TIMEOUT_SECONDS": "2.5",
        "ROUTER_REQUEST_DIALECT": "json",
    }
    assert router_settings(environ) == RouterSettings(
        amqp_uri=URI, port=9000, host="127.0.0.1", timeout_seconds=2.5, request_dialect=Dialect.JSON
    )


def test_a_service_needs_an_amqp_uri() -> None:
    with pytest.raises(
        SettingsError,
        match=r"^AMQP_URI='': must be an amqp:// or amqps:// URI with the service's own user and password, ",
    ):
        service_settings({})


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ROUTER_PORT", "http", r"^ROUTER_PORT='http': must be a TCP port, an integer from 1 to 65535$"),
        ("ROUTER_PORT", "70000", r"^ROUTER_PORT='70000': must be a TCP port, an integer from 1 to 65535$"),
        (
            "ROUTER_TIMEOUT_SECONDS",
            "0",
            r"^ROUTER_TIMEOUT_SECONDS='0': must be a number of seconds greater than 0 and at most 300$",
        ),
        (
            "ROUTER_TIMEOUT_SECONDS",
            "soon",
            r"^ROUTER_TIMEOUT_SECONDS='soon': must be a number of seconds greater than 0 and at most 300$",
        ),
        ("ROUTER_REQUEST_DIALECT", "xml", r"^ROUTER_REQUEST_DIALECT='xml': must be one of msgpack, json$"),
        ("ROUTER_HOST", "", r"^ROUTER_HOST='': must be an address to listen on, e.g. 0.0.0.0 or 127.0.0.1$"),
    ],
)
def test_a_bad_router_setting_is_named_with_what_is_allowed(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        router_settings({"AMQP_URI": URI, variable: value})


@pytest.mark.parametrize("service", ["router", "hello_world"])
def test_a_service_without_settings_exits_2_with_one_line(service: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"alchemy_services.{service}"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (result.returncode, result.stderr.count("\n"), result.stderr.startswith(f"{service}: AMQP_URI=''")) == (
        2,
        1,
        True,
    )
