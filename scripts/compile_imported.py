"""Compiles to bytecode only the installed modules that importing the CDK app loads.

`make setup` installs with ``pip install --no-compile``: aws-cdk-lib is about 180 MB of Python, one module
per AWS service, and pip would compile all of it although the app imports a few dozen. What the app does
import is compiled here, at setup, so the first `cdk synth` is as fast as every later one; anything else is
compiled by Python itself the first time it is imported (tests, tools).
"""

from __future__ import annotations

import argparse
import compileall
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

LIST_IMPORTED = """
import json, sys
sys.path.insert(0, sys.argv[1])
import app  # noqa: F401  (the module only: its synth runs under `if __name__ == "__main__"`)
print(json.dumps([getattr(module, "__file__", None) for module in list(sys.modules.values())]))
"""


def imported_files(*, python: str) -> list[Path]:
    """Source files of every module that importing the app loads, from a fresh interpreter."""
    completed = subprocess.run(
        [python, "-c", LIST_IMPORTED, str(REPO)], capture_output=True, text=True, check=True, cwd=REPO
    )
    files: list[str | None] = json.loads(completed.stdout.splitlines()[-1])
    return sorted({Path(name) for name in files if name and name.endswith(".py")})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.parse_args(argv)
    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    installed = [path for path in imported_files(python=sys.executable) if site_packages in path.resolve().parents]
    failed = [path for path in installed if not compileall.compile_file(path, quiet=2)]
    print(f"compiled {len(installed) - len(failed)} imported modules of {site_packages}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
