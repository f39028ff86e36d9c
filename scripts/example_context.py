"""Writes cdk.context.json for the documented example target (account 123456789012, eu-west-1).

The pull-request diff runs with lookups off, so the committed cdk.context.json must hold every
lookup the app makes for the target. The team's real target needs real values: synthesize once
with credentials for it (``npx cdk synth -c account=... -c region=...``) and commit the result.

This script makes the example file without any AWS account: the real CDK CLI does the lookups
against the local emulator, which offers one stand-in Flatcar image under Flatcar's publisher
account. The AZ names are eu-west-1's; the AMI id is the emulator's and exists
nowhere else: it is an example, replaced when the team generates the file for its target.
The file is written with sorted keys so that another branch's entries merge line by line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alchemy_tools import local_aws, local_emulator  # noqa: E402

ACCOUNT = "123456789012"
REGION = "eu-west-1"
FLATCAR_PUBLISHER = "075585003325"
STAND_IN_IMAGE = "Flatcar-stable-0000.0.0-hvm"
CONTEXT_FILE = ROOT / "cdk.context.json"


STAND_IN = {
    "ami_id": "ami-0123456789abcdef0",
    "name": STAND_IN_IMAGE,
    "description": "stand-in for the newest Flatcar stable image: an example id, not a real image",
    "owner_id": FLATCAR_PUBLISHER,
    "public": True,
    "architecture": "x86_64",
    "virtualization_type": "hvm",
    "root_device_type": "ebs",
    "root_device_name": "/dev/xvda",
    "creation_date": "2026-01-01T00:00:00.000Z",
}
"""The one image the emulator offers (in every account and region), owned by Flatcar's publisher
account, as moto's ``MOTO_AMIS_PATH`` reads it. Its id is AWS's documentation example id."""


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="alchemy-context-") as workdir:
        images = Path(workdir) / "amis.json"
        images.write_text(json.dumps([STAND_IN]))
        os.environ["MOTO_AMIS_PATH"] = str(images)
        with local_aws.LocalAws.on_free_port(Path(workdir)) as server:
            environment = server.environment()
            environment.update({"AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION})
            # The lookups alone: the emulator switch would also adapt the template, which is not needed.
            environment.pop(local_emulator.SWITCH, None)
            context = Path(workdir) / "cdk.context.json"
            if CONTEXT_FILE.exists():
                context.write_text(CONTEXT_FILE.read_text())
            done = subprocess.run(
                [
                    str(ROOT / "node_modules" / ".bin" / "cdk"),
                    "synth",
                    "--quiet",
                    "--output",
                    str(Path(workdir) / "out"),
                    "-c",
                    f"account={ACCOUNT}",
                    "-c",
                    f"region={REGION}",
                ],
                cwd=ROOT,
                env=environment,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                print(done.stdout + done.stderr, file=sys.stderr)
                return 1
    written = json.loads(CONTEXT_FILE.read_text())
    CONTEXT_FILE.write_text(json.dumps(written, indent=2, sort_keys=True) + "\n")
    print(f"{CONTEXT_FILE.name}: {len(written)} entries; stand-in node image {STAND_IN['ami_id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
