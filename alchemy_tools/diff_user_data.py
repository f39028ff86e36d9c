"""Reads a user-data change out of `cdk diff` text and says what changes on the machine.

A node's user data is a cloud-config whose files travel as one gzip+base64 tar (the node
bundle, see ``alchemy_constructs/node_bootstrap.py``). In `cdk diff` that is one line of
thousands of base64 characters before and one after: a reviewer cannot see that a
``node_count`` change edits the broker's cluster size hint in ``rabbitmq.conf``. This module
decodes both sides from the diff text alone and compares the bundle file by file, and the rest
of the user data line by line.

The node bundle now travels as an S3 asset: the user data names it (``NODE_BUNDLE_URL``) and its
SHA-256 (``NODE_BUNDLE_SHA256``). When that hash changes, both archives are looked up by hash among
the staged bundles on this machine (``cdk.out`` and the synth staging directory, or the directories
in ``CDK_DIFF_BUNDLE_DIRS``) and compared file by file; a side that is not found is named as such.

The CLI prints a user-data change in one of two shapes, and both are read:

- a JSON hunk (``@@ -21,6 +21,6 @@``) of the ``Fn::Join`` that carries the document: each
  changed element is a JSON string literal on one ``[-]`` or ``[+]`` line;
- a plain string (the NAT instance's script): ``[-] #!/bin/bash`` followed by the script's other
  lines, unindented, up to the ``[+]`` side.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alchemy_constructs.bundle_staging import STAGING_DIRECTORY

GZIP_BASE64 = re.compile(r"H4sI[A-Za-z0-9+/]+={0,2}")
"""A base64 text that starts with gzip's magic bytes (1f 8b 08 encode as ``H4sI``)."""
_PATH_BEFORE = re.compile(r"path: (?P<path>\S+)")
_TREE_LINE = re.compile(r"^(?P<indent>[ │├└─]*)\[(?P<sign>[-+~ ])\] ?(?P<rest>.*)$")
_HUNK = re.compile(r"^[ │├└─]*@@ .* @@$")
_REF = re.compile(r'^"Ref": "(?P<name>[^"]+)",?$')
_BUNDLE_SHA256 = re.compile(r"^\s*NODE_BUNDLE_SHA256=(?P<sha256>[0-9a-f]{64})\s*$", re.M)
BUNDLE_LABEL = "node bundle (S3 asset)"
DEFAULT_BUNDLE_DIRS = ("cdk.out", str(STAGING_DIRECTORY))
"""Where synthesized bundles are: the assembly, and the directory every synth writes them to first
(:mod:`alchemy_constructs.bundle_staging`), which keeps the bundles of earlier synths on this machine."""
CONTEXT_LINES = 2
"""Unchanged lines shown around each change in a file diff."""

FileStatus = Literal["added", "removed", "changed"]


@dataclass(frozen=True)
class FileChange:
    """One file of an archive that differs between the two sides."""

    path: str
    status: FileStatus
    diff: tuple[str, ...]
    """Unified diff lines (without the ``---``/``+++`` header); empty for a binary file."""


@dataclass(frozen=True)
class ArchiveChange:
    """A gzip+base64 file of the user data (the node bundle) that differs, file by file inside."""

    path: str
    files: tuple[FileChange, ...]
    problem: str = ""
    """Why the archive could not be compared (then ``files`` is empty)."""


@dataclass(frozen=True)
class UserDataChange:
    """What changes in one resource's user data."""

    archives: tuple[ArchiveChange, ...]
    text_diff: tuple[str, ...]
    """Unified diff of the user data outside the archives (a changed environment line, a script)."""


@dataclass(frozen=True)
class _Entry:
    sign: str
    indent: int
    text: str


def property_changed(block: Sequence[str], name: str) -> bool:
    """Whether the resource's diff block has a changed property (or sub-property) called ``name``."""
    pattern = re.compile(rf"\[[~+-]\] \.?{re.escape(name)}(?::|\s|$)")
    return any(pattern.search(line) for line in block)


def user_data_change(block: Sequence[str]) -> UserDataChange | None:
    """The decoded user-data change of one resource's diff block, or None when it has none."""
    entries = _entries_under(block, "UserData")
    if entries is None:
        return None
    old = _side(entries, "-")
    new = _side(entries, "+")
    old_archives, old_rest = _split_archives(old)
    new_archives, new_rest = _split_archives(new)
    archives = []
    for path in sorted(old_archives.keys() | new_archives.keys()):
        before, after = old_archives.get(path), new_archives.get(path)
        if before != after:
            archives.append(compare_archives(path, before, after))
    old_bundle, new_bundle = _BUNDLE_SHA256.search(old_rest), _BUNDLE_SHA256.search(new_rest)
    if old_bundle and new_bundle and old_bundle["sha256"] != new_bundle["sha256"]:
        archives.append(compare_staged_bundles(old_bundle["sha256"], new_bundle["sha256"], staged_bundles()))
    text_diff = tuple(difflib.unified_diff(old_rest.splitlines(), new_rest.splitlines(), n=CONTEXT_LINES, lineterm=""))[
        2:
    ]
    return UserDataChange(tuple(archives), text_diff)


def staged_bundles(directories: Sequence[str] | None = None) -> dict[str, Path]:
    """Gzipped archives by SHA-256, from ``directories`` (default: ``CDK_DIFF_BUNDLE_DIRS``, colon-separated,
    else :data:`DEFAULT_BUNDLE_DIRS`)."""
    if directories is None:
        configured = os.environ.get("CDK_DIFF_BUNDLE_DIRS")
        directories = configured.split(os.pathsep) if configured else DEFAULT_BUNDLE_DIRS
    found: dict[str, Path] = {}
    for directory in directories:
        for path in sorted(Path(directory).glob("*.gz")) if Path(directory).is_dir() else ():
            found.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
    return found


def compare_staged_bundles(before: str, after: str, staged: Mapping[str, Path]) -> ArchiveChange:
    """The node bundle's change file by file, when both sides' archives are at hand."""
    missing = [f"{side} {sha256[:12]}" for side, sha256 in (("base", before), ("head", after)) if sha256 not in staged]
    if missing:
        return ArchiveChange(
            BUNDLE_LABEL,
            (),
            f"changed, but the {' and '.join(missing)} archive is not among the staged bundles "
            "(synthesize that commit, or set CDK_DIFF_BUNDLE_DIRS) to compare file by file",
        )
    try:
        old_files = _tar_members(gzip.decompress(staged[before].read_bytes()))
        new_files = _tar_members(gzip.decompress(staged[after].read_bytes()))
    except (OSError, EOFError, zlib.error, tarfile.TarError) as error:
        return ArchiveChange(BUNDLE_LABEL, (), f"could not be decoded ({error.__class__.__name__}: {error})")
    return ArchiveChange(BUNDLE_LABEL, _changed_files(old_files, new_files))


def compare_archives(path: str, before: str | None, after: str | None) -> ArchiveChange:
    """Compares two gzip+base64 archives (either may be missing) file by file."""
    try:
        old_files = unpack(before) if before is not None else {}
        new_files = unpack(after) if after is not None else {}
    except (binascii.Error, OSError, EOFError, zlib.error, tarfile.TarError, ValueError) as error:
        return ArchiveChange(path, (), f"could not be decoded ({error.__class__.__name__}: {error})")
    return ArchiveChange(path, _changed_files(old_files, new_files))


def _changed_files(old_files: Mapping[str, bytes], new_files: Mapping[str, bytes]) -> tuple[FileChange, ...]:
    files = []
    for name in sorted(old_files.keys() | new_files.keys()):
        old_data, new_data = old_files.get(name), new_files.get(name)
        if old_data == new_data:
            continue
        status: FileStatus = "added" if old_data is None else ("removed" if new_data is None else "changed")
        files.append(FileChange(name, status, _file_diff(old_data or b"", new_data or b"")))
    return tuple(files)


def unpack(packed: str) -> dict[str, bytes]:
    """The files of a gzip+base64 text: a tar's members by absolute path, or one unnamed file."""
    data = gzip.decompress(base64.b64decode(packed, validate=True))
    try:
        return _tar_members(data)
    except tarfile.ReadError:
        return {"(content)": data}


def _tar_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        files = {}
        for member in archive.getmembers():
            extracted = archive.extractfile(member) if member.isfile() else None
            if extracted is not None:
                files["/" + member.name.lstrip("/")] = extracted.read()
        return files


def _file_diff(old: bytes, new: bytes) -> tuple[str, ...]:
    try:
        old_text, new_text = old.decode(), new.decode()
    except UnicodeDecodeError:
        return ()
    lines = difflib.unified_diff(old_text.splitlines(), new_text.splitlines(), n=CONTEXT_LINES, lineterm="")
    return tuple(lines)[2:]


def _entries_under(block: Sequence[str], name: str) -> list[_Entry] | None:
    """The ``[-]``/``[+]``/``[ ]`` entries below the property ``name``, with their continuation lines."""
    start = None
    for index, line in enumerate(block):
        match = _TREE_LINE.match(line)
        if match is not None and re.match(rf"\.?{re.escape(name)}(?::|\s|$)", match.group("rest")):
            start = index
            depth = len(match.group("indent"))
            break
    if start is None:
        return None
    entries: list[_Entry] = []
    for line in block[start + 1 :]:
        match = _TREE_LINE.match(line)
        if match is not None:
            if len(match.group("indent")) <= depth:
                break
            entries.append(_Entry(match.group("sign"), len(match.group("indent")), match.group("rest")))
        elif _HUNK.match(line):
            continue
        elif entries:
            # A multi-line plain string: the CLI prints its other lines as they are.
            last = entries[-1]
            entries[-1] = _Entry(last.sign, last.indent, f"{last.text}\n{line}")
    return entries


def _side(entries: Sequence[_Entry], sign: str) -> str:
    """One side's user-data text: its changed string elements decoded, references as ``${Name}``."""
    parts = []
    for entry in entries:
        if entry.sign != sign:
            continue
        parts.append(_decode_element(entry.text))
    return "".join(parts)


def _decode_element(text: str) -> str:
    stripped = text.strip()
    literal = stripped[:-1] if stripped.endswith(",") else stripped
    if literal.startswith('"') and literal.endswith('"') and len(literal) >= 2:
        try:
            value = json.loads(literal)
        except json.JSONDecodeError:
            return text
        if isinstance(value, str):
            return value
    reference = _REF.match(stripped)
    if reference is not None:
        return "${" + reference.group("name") + "}"
    if re.fullmatch(r"[\[\]{}(),]*|\"Fn::[A-Za-z]+\": \[?", literal):
        return ""
    # A plain string printed as it is (its last lines may be the blank ones before the next resource).
    return text.rstrip("\n")


def _split_archives(text: str) -> tuple[dict[str, str], str]:
    """The gzip+base64 blobs of ``text`` by the path written before each, and the text without them."""
    archives: dict[str, str] = {}
    pieces = []
    position = 0
    for number, match in enumerate(GZIP_BASE64.finditer(text)):
        before = _PATH_BEFORE.findall(text[position : match.start()])
        path = before[-1] if before else f"(archive {number + 1})"
        archives[path] = match.group(0)
        pieces.append(text[position : match.start()])
        pieces.append(f"<gzip+base64 archive of {path}: compared file by file>")
        position = match.end()
    pieces.append(text[position:])
    return archives, "".join(pieces)
