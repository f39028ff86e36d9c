"""cfn-lint on every synthesized variant of the app: the settings combinations the tests synthesize
(`VARIANTS` in tests/synth.py), each synthesized in-process as the CLI would.

cfn-lint stands in for CDK's built-in template validation, which the app turns off for speed (see
CONTRIBUTING.md). The pre-commit hook `cfn-lint` runs this when the app, its constructs, services or
settings change (`make check`: always). Exits non-zero and prints each finding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from tests.synth import VARIANTS, synthesize

CFN_LINT = Path(sys.executable).parent / "cfn-lint"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="alchemy-cfn-lint-") as directory:
        paths = []
        for name, settings in VARIANTS.items():
            path = Path(directory) / f"{name}.template.json"
            path.write_text(json.dumps(synthesize(**settings).template_json))
            paths.append(str(path))
        lint = subprocess.run([str(CFN_LINT), *paths], capture_output=True, text=True, check=False)
    print(lint.stdout + lint.stderr, end="")
    return lint.returncode


if __name__ == "__main__":
    sys.exit(main())
