"""The diff comment reads a node bundle that travels as an S3 asset: the user data names only its hash,
so both archives are found among the staged bundles and compared file by file."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from alchemy_tools import diff_user_data

REPOSITORY = Path(__file__).resolve().parent.parent


def archive(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)


def stage(directory: Path, files: dict[str, str]) -> str:
    data = archive(files)
    sha256 = hashlib.sha256(data).hexdigest()
    (directory / f"{sha256}.tar.gz").write_bytes(data)
    return sha256


def user_data_block(old_sha256: str, new_sha256: str) -> list[str]:
    """A launch template's user-data change as `cdk diff` prints it (a JSON hunk of the Fn::Join)."""

    def element(sha256: str) -> str:
        return json.dumps(f"/{'a' * 64}.gz\nNODE_BUNDLE_SHA256={sha256}\n- path: /opt/bin/alchemy-fetch-bundle\n")

    return [
        "     └─ [~] .UserData:",
        "         └─ [~] .Fn::Base64:",
        "             └─ [~] .Fn::Join:",
        "                 └─ @@ -21,3 +21,3 @@",
        "                    [ ]     {",
        '                    [ ]       "Ref": "AWS::Region"',
        "                    [ ]     },",
        f"                    [-]     {element(old_sha256)}",
        f"                    [+]     {element(new_sha256)}",
        "                    [ ]   ]",
        "                    [ ] ]",
    ]


def test_a_changed_bundle_is_compared_file_by_file_from_the_staged_archives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = stage(tmp_path, {"etc/alchemy/rabbitmq/rabbitmq.conf": "cluster_formation.target_cluster_size_hint = 3\n"})
    after = stage(tmp_path, {"etc/alchemy/rabbitmq/rabbitmq.conf": "cluster_formation.target_cluster_size_hint = 4\n"})
    monkeypatch.setenv("CDK_DIFF_BUNDLE_DIRS", str(tmp_path))

    change = diff_user_data.user_data_change(user_data_block(before, after))

    assert change is not None
    (bundle,) = change.archives
    assert (bundle.path, bundle.problem) == (diff_user_data.BUNDLE_LABEL, "")
    (file,) = bundle.files
    assert (file.path, file.status) == ("/etc/alchemy/rabbitmq/rabbitmq.conf", "changed")
    assert "-cluster_formation.target_cluster_size_hint = 3" in file.diff
    assert "+cluster_formation.target_cluster_size_hint = 4" in file.diff


def test_a_bundle_side_not_staged_here_is_named_not_guessed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    after = stage(tmp_path, {"opt/bin/start-units": "#!/bin/sh\n"})
    monkeypatch.setenv("CDK_DIFF_BUNDLE_DIRS", str(tmp_path))

    change = diff_user_data.user_data_change(user_data_block("0" * 64, after))

    assert change is not None
    (bundle,) = change.archives
    assert bundle.files == ()
    assert bundle.problem.startswith("changed, but the base 000000000000 archive is not among the staged bundles")


def test_staged_bundles_are_found_by_the_sha256_of_their_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    same = stage(tmp_path, {"opt/bin/start-units": "#!/bin/sh\n"})
    monkeypatch.setenv("CDK_DIFF_BUNDLE_DIRS", str(tmp_path))
    assert diff_user_data.staged_bundles() == {same: tmp_path / f"{same}.tar.gz"}


def test_the_comment_looks_where_synth_stages_the_bundles() -> None:
    from alchemy_constructs.bundle_staging import STAGING_DIRECTORY

    assert str(STAGING_DIRECTORY) in diff_user_data.DEFAULT_BUNDLE_DIRS


def test_the_comment_tool_does_not_import_cdk() -> None:
    """It runs in the pull request workflow's comment job, which installs no CDK."""
    script = (
        "import sys, alchemy_tools.diff_user_data; print(sorted(m for m in sys.modules if m.startswith('aws_cdk')))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPOSITORY)
    assert result.stdout == "[]\n"
