"""Runs shellcheck on shell scripts as they will run: `{{name}}` placeholders filled in first.

The node bundle fills `{{name}}` markers (image names) into some scripts when it is built; shellcheck reads
the raw marker as a literal brace and warns about it, so each script is checked with a plausible value in
its place. Used by the pre-commit hook (and so by `make check`); exits non-zero if any script has findings.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PLACEHOLDER = re.compile(r"\{\{\s*\w+\s*\}\}")
RENDERED_VALUE = "registry.example/image:1.0"
SHELLCHECK = Path(sys.executable).parent / "shellcheck"


def check(path: Path) -> bool:
    """True when shellcheck has nothing to say about ``path`` with its placeholders filled in."""
    rendered = PLACEHOLDER.sub(RENDERED_VALUE, path.read_text(encoding="utf-8"))
    # Read from stdin, shellcheck cannot see the shebang's file name: the scripts are all bash.
    result = subprocess.run(
        [str(SHELLCHECK), "--shell=bash", "--external-sources", "-"],
        input=rendered,
        capture_output=True,
        text=True,
        check=False,
        cwd=path.parent,
    )
    if result.returncode != 0:
        # shellcheck names the input "-": put the real path in front so the finding can be found.
        print(f"{path}:\n{result.stdout}{result.stderr}", end="")
    return result.returncode == 0


def main(paths: list[str]) -> int:
    failed = [path for path in paths if not check(Path(path))]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
