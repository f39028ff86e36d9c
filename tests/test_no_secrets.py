"""No credential or fixed password in what a node and CloudFormation receive: the templates, the user data
and the node bundle, scanned by scripts/secret_scan.py (which the `secret-scan` pre-commit hook also runs on
every file of the repository), and the scan shown to find what it is for.
"""

from __future__ import annotations

import base64
import copy
import gzip
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import yaml

from alchemy_constructs.node_bundle import NodeBundle
from scripts.secret_scan import LITERAL_SECRET, findings
from tests.synth import VARIANTS, synthesize


def user_data_parts(template: dict[str, Any]) -> list[str]:
    """The launch template's user data, its deploy-time values left as names."""
    return [
        "".join(part if isinstance(part, str) else f"<{json.dumps(part)}>" for part in parts)
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::EC2::LaunchTemplate" and "UserData" in resource["Properties"]["LaunchTemplateData"]
        for parts in [resource["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Join"][1]]
    ]


def unpacked(user_data: str) -> dict[str, str]:
    """Every file a node gets from its user data, the bundle decompressed."""
    document = yaml.safe_load(user_data)
    files = {}
    for entry in document.get("write_files", []):
        if entry.get("encoding") == "gzip+base64":
            raw = gzip.decompress(base64.b64decode(entry["content"]))
            with tarfile.open(fileobj=io.BytesIO(raw)) as archive:
                for member in archive.getmembers():
                    files[member.name] = archive.extractfile(member).read().decode()  # type: ignore[union-attr]
        else:
            files[entry["path"]] = entry["content"]
    for unit in document.get("coreos", {}).get("units", []):
        files[unit["name"]] = unit.get("content", "")
    return files


def template_findings(templates: dict[str, dict[str, Any]], directory: Path) -> list[tuple[str, list[str], str]]:
    """(kind, variants, line) of each finding in the templates, scanned as one file of the lines they hold
    between them: the scan reads line by line, and the variants share nine lines in ten."""
    variants_of_line: dict[str, list[str]] = {}
    for name, template in templates.items():
        template = copy.deepcopy(template)
        # The user data is scanned unpacked (below); compressed, it is random-looking bytes.
        for resource in template["Resources"].values():
            if resource["Type"] == "AWS::EC2::LaunchTemplate":
                resource["Properties"]["LaunchTemplateData"].pop("UserData", None)
        for line in json.dumps(template, indent=1).splitlines():
            variants_of_line.setdefault(line, []).append(name)
    lines = list(variants_of_line)
    path = directory / "templates.json"
    path.write_text("\n".join(lines) + "\n")
    return [
        (kind, variants_of_line[lines[number - 1]], lines[number - 1])
        for _, kind, number in findings([path], entropy=False)
    ]


def test_synthesized_templates_hold_no_secret(tmp_path: Path) -> None:
    templates = {name: synthesize(**settings).template_json for name, settings in VARIANTS.items()}
    assert template_findings(templates, tmp_path) == []


def test_the_template_scan_names_the_variant_of_a_planted_password(tmp_path: Path) -> None:
    template = copy.deepcopy(synthesize().template_json)
    planted = "Xq7vK2pL" + "9mWz4RtY"
    template["Resources"]["Planted"] = {"Type": "Custom::Planted", "Properties": {"DbPassword": planted}}
    found = template_findings({"defaults": synthesize().template_json, "planted": template}, tmp_path)
    assert [(variants, planted in line) for _, variants, line in found] == [(["planted"], True)]


SERVICE_SECRETS = re.compile(r"^RABBITMQ_SERVICE_SECRETS=(.*)$", re.M)
SERVICE_SECRET_PAIR = re.compile(r"([a-z_]+)=(\S+)")


def one_secret_a_line(environment: str) -> str:
    """``RABBITMQ_SERVICE_SECRETS=router=ARN hello_world=ARN`` as one ``..._SECRET_<SERVICE>=ARN`` line
    each, so the scanner reads each value as it reads the other ARN variables (``router=`` after a
    keyword looks like a literal password to it)."""

    def split(match: re.Match[str]) -> str:
        pairs = SERVICE_SECRET_PAIR.findall(match[1])
        assert pairs, match[0]
        return "\n".join(f"RABBITMQ_SERVICE_SECRET_{service.upper()}={value}" for service, value in pairs)

    return SERVICE_SECRETS.sub(split, environment)


def bundle_files(archive: bytes) -> dict[str, str]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive))) as tar:
        return {member.name: tar.extractfile(member).read().decode() for member in tar.getmembers()}  # type: ignore[union-attr]


def test_user_data_and_node_bundle_hold_no_secret(tmp_path: Path) -> None:
    synthesis = synthesize()
    (bundle,) = [child for child in synthesis.stack.node.children if isinstance(child, NodeBundle)]
    paths = []
    for name, text in bundle_files(bundle.archive_path.read_bytes()).items():
        path = tmp_path / f"bundle-{name.replace('/', '_')}"
        path.write_text(text)
        paths.append(path)
    for index, user_data in enumerate(user_data_parts(synthesis.template_json)):
        for name, text in unpacked(user_data).items():
            path = tmp_path / f"{index}-{name.replace('/', '_')}"
            path.write_text(one_secret_a_line(text) if name == "/etc/environment" else text)
            paths.append(path)
    assert len(paths) > 20
    assert findings(paths, entropy=False) == []


def test_the_scan_finds_a_password_planted_in_a_unit_or_in_code(tmp_path: Path) -> None:
    # Assembled here, so that the repository itself holds no secret-looking literal.
    planted = "Xq7vK2pL" + "9mWz4RtY"
    access_key = "AKIA" + "IOSFODNN7EXAMPLE"
    unit = tmp_path / "rabbitmq.service"
    unit.write_text(f"Environment=RABBITMQ_DEFAULT_PASS={planted}\n")
    config = tmp_path / "rabbitmq.conf"
    config.write_text(f"default_pass = {planted}\n")
    code = tmp_path / "settings.py"
    code.write_text(f'password = "{planted}"\naws_key = "{access_key}"\n')
    found = {(Path(file).name, kind) for file, kind, _ in findings([unit, config, code], entropy=False)}
    assert found == {
        ("rabbitmq.service", "Literal secret"),
        ("rabbitmq.conf", "Literal secret"),
        ("settings.py", "Secret Keyword"),
        ("settings.py", "AWS Access Key"),
    }


def test_service_secrets_are_scanned_one_a_line() -> None:
    assert one_secret_a_line("A=1\nRABBITMQ_SERVICE_SECRETS=router=<r> hello_world=<h>\n") == (
        "A=1\nRABBITMQ_SERVICE_SECRET_ROUTER=<r>\nRABBITMQ_SERVICE_SECRET_HELLO_WORLD=<h>\n"
    )


def test_the_scan_finds_a_literal_service_password(tmp_path: Path) -> None:
    planted = "Xq7vK2pL" + "9mWz4RtY"
    environment = tmp_path / "environment"
    environment.write_text(one_secret_a_line(f"RABBITMQ_SERVICE_SECRETS=router={planted}\n"))
    assert findings([environment], entropy=False) != []


def test_references_and_variables_are_not_literal_secrets() -> None:
    for line in (
        "RABBITMQ_COOKIE_SECRET=arn:aws:secretsmanager:eu-west-1:1:secret:x",
        'printf "default_pass = %s" "$password"',
        'RABBITMQ_ADMIN_SECRET=<{"Ref": "Secret"}>',
        'password=$(secret "$ARN")',
    ):
        assert LITERAL_SECRET.search(line) is None, line
