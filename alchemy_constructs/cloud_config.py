"""Cloud-config for Flatcar's coreos-cloudinit, built as data and dumped to YAML.

The node's user data is a :class:`CloudConfig` value: units, files and update policy as
Python objects, rendered once by :meth:`CloudConfig.render`. Nothing here concatenates
YAML; new parts of the node bootstrap (etcd, the Alchemy services) are more
:class:`Unit` and :class:`WriteFile` values added to the same document.

Only keys that coreos-cloudinit knows are produced (``coreos.units``, ``coreos.update``,
``write_files``); the deprecated ``etcd2`` and ``fleet`` keys are not. Only what the node's user data
uses is modelled: it is a small stub, and everything else reaches the node in its bundle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import yaml

HEADER = "#cloud-config"

PRIVATE_IPV4 = "$private_ipv4"
"""Placeholder that coreos-cloudinit replaces with the instance's private address on EC2."""
PUBLIC_IPV4 = "$public_ipv4"
"""Placeholder that coreos-cloudinit replaces with the instance's public address on EC2."""

UnitCommand = Literal[
    "start",
    "stop",
    "restart",
    "reload",
    "try-restart",
    "reload-or-restart",
    "reload-or-try-restart",
]
RebootStrategy = Literal["etcd-lock", "reboot", "off"]


@dataclass(frozen=True)
class Unit:
    """A systemd unit that coreos-cloudinit writes, enables and/or starts.

    Without ``content`` the unit is one the OS already ships (for example ``docker.service``).
    """

    name: str
    content: str | None = None
    command: UnitCommand | None = None
    enable: bool | None = None
    mask: bool | None = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name}
        for key in ("mask", "enable", "command", "content"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data


@dataclass(frozen=True)
class WriteFile:
    """A file written before units start; ``permissions`` and ``owner`` are written only when given
    (coreos-cloudinit's defaults are 0644 and root:root, and every byte of user data counts)."""

    path: str
    content: str
    permissions: str | None = None
    owner: str | None = None

    def to_data(self) -> dict[str, Any]:
        data = {"path": self.path}
        for key in ("owner", "permissions"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        data["content"] = self.content
        return data


@dataclass(frozen=True)
class CloudConfig:
    """One node's cloud-config document."""

    units: tuple[Unit, ...] = ()
    write_files: tuple[WriteFile, ...] = ()
    reboot_strategy: RebootStrategy | None = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.write_files:
            data["write_files"] = [f.to_data() for f in self.write_files]
        coreos: dict[str, Any] = {}
        if self.reboot_strategy is not None:
            coreos["update"] = {"reboot_strategy": self.reboot_strategy}
        if self.units:
            coreos["units"] = [u.to_data() for u in self.units]
        if coreos:
            data["coreos"] = coreos
        return data

    def render(self) -> str:
        """The document as user data: the ``#cloud-config`` header, then YAML."""
        body = yaml.dump(self.to_data(), Dumper=_BlockStyleDumper, sort_keys=False, width=1000)
        return f"{HEADER}\n{body}"


def environment_file(variables: Mapping[str, str]) -> str:
    """Content of an ``/etc/environment``-style file, one ``KEY=value`` a line, in the given order."""
    return "".join(f"{name}={value}\n" for name, value in variables.items())


class _BlockStyleDumper(yaml.SafeDumper):
    """Writes multi-line strings (unit files, scripts) as readable ``|`` blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_BlockStyleDumper.add_representer(str, _represent_str)
