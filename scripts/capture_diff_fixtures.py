"""Captures the `cdk diff` fixtures of tests/fixtures/cdk_diff from the real CLI and the local emulator.

Run after ``make local-deploy`` (default settings, nothing else deployed):
``.venv/bin/python scripts/capture_diff_fixtures.py``. Each fixture is what the pinned CLI
printed for one change against the deployed stack. Settings changes go through ``-c``; the
changes no setting can make (an IAM statement added, the NAT's image and user data changed)
are made by editing the synthesized template before ``cdk diff --app`` reads it, and say so
in the fixture's name.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alchemy_tools import local_aws  # noqa: E402
from alchemy_tools.local_deploy import TEMPLATE, LocalCdk, _workdir  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "cdk_diff"

Edit = Callable[[dict[str, Any]], None]


def of_type(template: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [r for r in template["Resources"].values() if r["Type"] == resource_type]


def widen_node_policy(template: dict[str, Any]) -> None:
    """The node policy gains read of every S3 object and the right to pass any role: a widening."""
    (policy,) = [r for name, r in template["Resources"].items() if name.startswith("NodeGroupPolicy")]
    policy["Properties"]["PolicyDocument"]["Statement"].append(
        {"Action": ["iam:PassRole", "s3:GetObject"], "Effect": "Allow", "Resource": "*"}
    )


def change_nat_image_and_user_data(template: dict[str, Any]) -> None:
    """The NAT instance moves to a pinned image id and its boot script gains a line."""
    (nat,) = of_type(template, "AWS::EC2::Instance")
    nat["Properties"]["ImageId"] = "ami-0abcdef1234567890"
    script = nat["Properties"]["UserData"]["Fn::Base64"]
    nat["Properties"]["UserData"]["Fn::Base64"] = script.replace(
        "sudo service iptables save", "sudo sysctl -w net.netfilter.nf_conntrack_max=262144\nsudo service iptables save"
    )


CAPTURES: dict[str, tuple[dict[str, object], Edit | None]] = {
    "update_node_count": ({"node_count": 4}, None),
    "narrow_ingress_cidrs": ({"ingress_cidrs": "203.0.113.0/24,198.51.100.0/24"}, None),
    "edited_template_iam_widening": ({}, widen_node_policy),
    "edited_template_nat_image_and_user_data": ({}, change_nat_image_and_user_data),
}


def main() -> int:
    cdk = LocalCdk(local_aws.running_background(), _workdir())
    for name, (settings, edit) in CAPTURES.items():
        assembly = cdk.synth(settings)
        if edit is not None:
            path = assembly / TEMPLATE
            template = json.loads(path.read_text())
            edit(template)
            path.write_text(json.dumps(template, indent=1))
        result = cdk.diff_assembly(assembly)
        (FIXTURES / f"{name}.txt").write_text(result.output)
        print(f"{name}: {len(result.output)} characters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
