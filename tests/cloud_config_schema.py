"""The cloud-config keys and value types that Flatcar's coreos-cloudinit accepts.

Restated from coreos-cloudinit's config types (the project's reference notes list them):
a key that is not here is reported as unrecognized by the node, a deprecated one as
deprecated. The schema test walks a rendered document against these tables.
"""

from __future__ import annotations

import re
from typing import Any

TOP_LEVEL: dict[str, type] = {
    "ssh_authorized_keys": list,
    "coreos": dict,
    "write_files": list,
    "hostname": str,
    "users": list,
    "manage_etc_hosts": str,
}
COREOS: dict[str, type] = {"flannel": dict, "locksmith": dict, "oem": dict, "update": dict, "units": list}
COREOS_DEPRECATED = {"etcd", "etcd2", "fleet"}
UPDATE: dict[str, type] = {"reboot_strategy": str, "group": str, "server": str}
REBOOT_STRATEGIES = {"etcd-lock", "reboot", "off"}
UNIT: dict[str, type] = {
    "name": str,
    "mask": bool,
    "enable": bool,
    "runtime": bool,
    "content": str,
    "command": str,
    "drop_ins": list,
}
UNIT_COMMANDS = {"start", "stop", "restart", "reload", "try-restart", "reload-or-restart", "reload-or-try-restart"}
DROP_IN: dict[str, type] = {"name": str, "content": str}
FILE: dict[str, type] = {"path": str, "content": str, "owner": str, "permissions": str, "encoding": str}
FILE_ENCODINGS = {"base64", "b64", "gz", "gzip", "gz+base64", "gzip+base64", "gz+b64", "gzip+b64"}
PERMISSIONS = re.compile(r"^0?[0-7]{3,4}$")


def _check_keys(where: str, data: dict[str, Any], allowed: dict[str, type]) -> list[str]:
    problems = []
    for key, value in data.items():
        if key not in allowed:
            problems.append(f"{where}.{key}: unrecognized key")
        elif not isinstance(value, allowed[key]):
            problems.append(f"{where}.{key}: expected {allowed[key].__name__}, got {type(value).__name__}")
    return problems


def problems(document: dict[str, Any]) -> list[str]:
    """Everything coreos-cloudinit would warn about in ``document`` (empty when it is clean)."""
    found = _check_keys("", document, TOP_LEVEL)
    coreos = document.get("coreos", {})
    found += [f".coreos.{key}: deprecated" for key in COREOS_DEPRECATED & set(coreos)]
    found += _check_keys(".coreos", {k: v for k, v in coreos.items() if k not in COREOS_DEPRECATED}, COREOS)
    update = coreos.get("update", {})
    found += _check_keys(".coreos.update", update, UPDATE)
    if "reboot_strategy" in update and update["reboot_strategy"] not in REBOOT_STRATEGIES:
        found.append(f".coreos.update.reboot_strategy: {update['reboot_strategy']!r} is not a strategy")
    for index, unit in enumerate(coreos.get("units", [])):
        where = f".coreos.units[{index}]"
        found += _check_keys(where, unit, UNIT)
        if "name" not in unit:
            found.append(f"{where}: no name")
        if "command" in unit and unit["command"] not in UNIT_COMMANDS:
            found.append(f"{where}.command: {unit['command']!r} is not a command")
        for drop_in in unit.get("drop_ins", []):
            found += _check_keys(f"{where}.drop_ins", drop_in, DROP_IN)
    for index, file in enumerate(document.get("write_files", [])):
        where = f".write_files[{index}]"
        found += _check_keys(where, file, FILE)
        if "permissions" in file and not PERMISSIONS.match(file["permissions"]):
            found.append(f"{where}.permissions: {file['permissions']!r} is not octal")
        if "encoding" in file and file["encoding"] not in FILE_ENCODINGS:
            found.append(f"{where}.encoding: {file['encoding']!r} is not an encoding")
    return found
