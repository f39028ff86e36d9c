"""Systemd unit files of the platform, read from disk and placed as fleet would have placed them.

The original platform handed ``services/*.service`` to fleet, which read each unit's
``[X-Fleet]`` section to schedule it. Fleet is gone; the units now start at boot from
cloud-config, and the same section keeps its meaning on every node:

* ``Global=true``: the unit runs on every node.
* A template unit (``name@.service``) runs ``instances[name]`` instances (default 1) on
  every node; ``Conflicts=`` naming its own template (``%p@*.service``) limits it to one.
* Any other unit would have run on one machine of the cluster, which boot-time
  placement cannot express: it is refused with a message saying so.

Units carry ``{{placeholder}}`` markers for values that come from settings (image names);
an unknown or unfilled marker is an error, never a unit with a hole in it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from alchemy_constructs.cloud_config import Unit

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
_SECTION = re.compile(r"^\[(?P<name>[^\]]+)\]\s*$")


class UnitFileError(ValueError):
    """A unit file that cannot be rendered or placed."""


@dataclass(frozen=True)
class UnitFile:
    """One unit file: its name and its text with placeholders filled."""

    name: str
    content: str

    @property
    def is_template(self) -> bool:
        return self.name.split(".")[0].endswith("@")

    @property
    def prefix(self) -> str:
        """``%p``: the name before ``@`` (or before the suffix)."""
        return self.name.split("@")[0].split(".")[0]

    def section(self, name: str) -> dict[str, list[str]]:
        """The keys of one section; systemd allows a key more than once, so values are lists."""
        values: dict[str, list[str]] = {}
        current = None
        for raw in self.content.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            header = _SECTION.match(line)
            if header:
                current = header["name"]
            elif current == name and "=" in line:
                key, value = line.split("=", 1)
                values.setdefault(key.strip(), []).append(value.strip())
        return values


def render_placeholders(name: str, text: str, values: Mapping[str, str]) -> str:
    """Fills ``{{key}}`` markers; a marker without a value names the file and the key."""
    missing = sorted({match for match in _PLACEHOLDER.findall(text) if match not in values})
    if missing:
        raise UnitFileError(f"{name}: no value for placeholder(s) {', '.join(missing)}; known: {', '.join(values)}")
    return _PLACEHOLDER.sub(lambda match: values[match[1]], text)


def read_unit_files(directory: Path, values: Mapping[str, str], pattern: str = "*.service") -> list[UnitFile]:
    """Every unit file in ``directory`` matching ``pattern``, sorted by name, placeholders filled."""
    return [
        UnitFile(name=path.name, content=render_placeholders(path.name, path.read_text(), values))
        for path in sorted(directory.glob(pattern))
    ]


def place(unit: UnitFile, instances: Mapping[str, int]) -> list[Unit]:
    """The cloud-config units that run ``unit`` on a node, by its ``[X-Fleet]`` section."""
    fleet = unit.section("X-Fleet")
    is_global = [value.lower() for value in fleet.get("Global", [])] == ["true"]
    if unit.is_template:
        own_conflict = {"%p@*.service", f"{unit.prefix}@*.service", f"{unit.prefix}@*"}
        one_per_node = any(value in own_conflict for value in fleet.get("Conflicts", []))
        count = 1 if one_per_node else instances.get(unit.prefix, 1)
        if count < 1:
            raise UnitFileError(f"{unit.name}: instance count must be at least 1; received {count}")
        return [
            Unit(name=unit.name, content=unit.content),
            *(
                Unit(name=f"{unit.prefix}@{index}.service", enable=True, command="start")
                for index in range(1, count + 1)
            ),
        ]
    if is_global:
        return [Unit(name=unit.name, content=unit.content, enable=True, command="start")]
    raise UnitFileError(
        f"{unit.name}: fleet would run this unit on one machine of the cluster, which boot-time "
        "placement cannot do; mark it Global=true (every node) or make it a template unit (name@.service)"
    )


def place_all(units: list[UnitFile], instances: Mapping[str, int]) -> list[Unit]:
    """Places every unit; instance counts for templates that are not in ``units`` are refused."""
    templates = {unit.prefix for unit in units if unit.is_template}
    unknown = sorted(set(instances) - templates)
    if unknown:
        raise UnitFileError(f"instance counts given for {', '.join(unknown)}, which no template unit defines")
    return [placed for unit in units for placed in place(unit, instances)]
