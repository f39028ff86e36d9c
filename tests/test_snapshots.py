"""Snapshots catch drift; the behavioural tests beside them say what matters.

Nothing opaque is snapshotted: hashes, account ids and base64 blobs are masked with stable placeholders,
so a script edit changes the snapshot only where the script's text shows it, and the node bundle's files
are snapshotted as their own text, from the archive the stack staged.

Update after an intended change with ``pytest -n 0 --snapshot-update`` and review the diff.
"""

from __future__ import annotations

import gzip
import io
import itertools
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension
from syrupy.types import PropertyPath

from tests.builders import elb_template, log_bucket_template, network_template, node_group_template
from tests.synth import synthesize

HASHES = (
    # Asset hashes, the bundle's SHA-256 and any other digest: they change with every byte of what they hash.
    (re.compile(r"\b[0-9a-f]{64}\b"), "<asset-hash>"),
    (re.compile(r"\b[0-9a-f]{40}\b"), "<sha1>"),
    (re.compile(r"\b\d{12}\b"), "<account>"),
)
"""Pattern and placeholder, applied in order to every string in a snapshot."""
BASE64_CANDIDATE = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{64,}={0,2}(?![A-Za-z0-9+/=])")
SCRAMBLED = 0.4
"""Share of neighbouring characters in different classes (upper, lower, digit, other) above which a run
reads as encoded bytes: about 0.7 for base64 of compressed data, under 0.25 for CamelCase ids and paths."""


def _character_class(character: str) -> int:
    return 0 if character.isupper() else 1 if character.islower() else 2 if character.isdigit() else 3


def _mask_base64(match: re.Match[str]) -> str:
    """A compressed archive or user data encoded at synth: no reviewer can read it, and any edit changes it."""
    run = match.group(0).rstrip("=")
    classes = [_character_class(character) for character in run]
    switches = sum(1 for left, right in itertools.pairwise(classes) if left != right)
    return "<base64>" if switches / (len(run) - 1) > SCRAMBLED else match.group(0)


def mask(text: str) -> str:
    for pattern, placeholder in HASHES:
        text = pattern.sub(placeholder, text)
    return BASE64_CANDIDATE.sub(_mask_base64, text)


def mask_volatile(*, data: Any, path: PropertyPath) -> Any:
    """Every string value of a snapshot with its opaque parts masked: hashes, accounts, base64."""
    return mask(data) if isinstance(data, str) else data


@pytest.fixture
def snapshot_json(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension).with_defaults(matcher=mask_volatile)


def test_masking_hides_hashes_and_accounts() -> None:
    value = "cdk-hnb659fds-assets-123456789012-eu-west-1/" + "a" * 64 + ".json"
    assert mask_volatile(data=value, path=()) == "cdk-hnb659fds-assets-<account>-eu-west-1/<asset-hash>.json"


def test_masking_hides_a_base64_blob_inside_text() -> None:
    blob = "H4sIAAAAAAAC/+1d" * 20 + "=="
    assert mask(f"#cloud-config\ncontent: {blob}\nencoding: gzip+base64\n") == (
        "#cloud-config\ncontent: <base64>\nencoding: gzip+base64\n"
    )


def test_masking_leaves_logical_ids_and_paths_alone() -> None:
    text = (
        "AlchemyStackNodeGroupSecurityGroup98D233C1 /opt/bin/alchemy-fetch-bundle arn:aws:s3:::bucket/key "
        "SsmParameterValueawsserviceamiamazonlinuxlatestal2023amikernel61x8664"
        "C96584B6F00A464EAD1953AFF4B05118Parameter "
        "ConstructUnderTest/Network/Resource/PublicSubnet1/NatInstance/InstanceRole/Resource"
    )
    assert mask(text) == text


def archive_listing(archive: Path) -> dict[str, str]:
    """Each member of a gzipped tar as ``path (mode)`` -> its text (or a note for a binary member)."""
    listing = {}
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive.read_bytes()))) as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            extracted = tar.extractfile(member)
            content = extracted.read() if extracted is not None else b""
            try:
                text = content.decode("utf-8")
            except UnicodeDecodeError:
                text = f"<binary, {len(content)} bytes>"
            listing[f"{member.name} ({member.mode:04o})"] = mask(text)
    return listing


def staged_archives(outdir: Path) -> list[Path]:
    """File assets that CDK staged as gzipped tar archives (the node bundle), whatever their names."""
    return sorted(path for path in outdir.glob("asset.*") if path.is_file() and path.read_bytes()[:2] == b"\x1f\x8b")


def test_stack_snapshot(snapshot_json: SnapshotAssertion) -> None:
    assert synthesize().template_json == snapshot_json


def test_node_bundle_files_snapshot(snapshot: SnapshotAssertion) -> None:
    """The files every node fetches, as text: a script edit shows as a readable diff of that script."""
    archives = staged_archives(synthesize().outdir)
    assert [archive_listing(archive) for archive in archives] == snapshot


def test_network_snapshot(snapshot_json: SnapshotAssertion) -> None:
    assert network_template().to_json() == snapshot_json


def test_router_load_balancer_snapshot(snapshot_json: SnapshotAssertion) -> None:
    assert elb_template().to_json() == snapshot_json


def test_node_group_snapshot(snapshot_json: SnapshotAssertion) -> None:
    assert node_group_template().to_json() == snapshot_json


def test_log_bucket_snapshot(snapshot_json: SnapshotAssertion) -> None:
    assert log_bucket_template().to_json() == snapshot_json
