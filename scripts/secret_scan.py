"""No credential or fixed password in a file: detect-secrets (Yelp's scanner, all default plugins) and a check
for literal passwords in units and configuration.

The original platform kept its Erlang cookie and RabbitMQ password in a unit file. The pre-commit hook
`secret-scan` runs this on every file a commit touches (`make check`: every tracked file); the tests use
:func:`findings` on what a node and CloudFormation receive (tests/test_no_secrets.py). Exits non-zero and
names each finding's file, kind and line.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from detect_secrets.core.secrets_collection import SecretsCollection
from detect_secrets.settings import default_settings, transient_settings

GENERATED = re.compile(
    r"^(tests/__snapshots__/|tests/fixtures/cdk_diff/|package-lock\.json$|requirements(-dev)?\.lock$)"
)
"""Generated copies of what the scan reads at its source (the template, the units): their
CDK hashes, base64 bundles and the locks' package hashes look random to an entropy check without being secrets.
The hook leaves them out (.pre-commit-config.yaml holds the same pattern)."""

ENTROPY_PLUGINS = {"Base64HighEntropyString", "HexHighEntropyString"}
"""Off for templates and user data: every CDK logical id and asset hash is high-entropy. The
keyword and credential-format plugins, and the literal check below, still read them."""

LITERAL_SECRET = re.compile(
    r"(?i)\b(?:[a-z_]*pass(?:word)?|[a-z_]*secret|[a-z_]*cookie|[a-z_]*token)\b\s*[=:]\s*[\"']?"
    r"(?![\"'<$/{]|arn:)([^\s$\"']{6,})(?=[\s\"']|$)"
)
"""``password = value`` with a literal value (not a $variable, an ARN or a deploy-time reference):
what detect-secrets' keyword plugin does not look for in unit files and rabbitmq.conf."""


def findings(paths: list[Path], *, entropy: bool = True) -> list[tuple[str, str, int]]:
    """(file, kind, line) of every finding in ``paths``."""
    secrets = SecretsCollection()
    with default_settings() as settings:
        plugins = [{"name": name} for name in settings.plugins if entropy or name not in ENTROPY_PLUGINS]
    with transient_settings({"plugins_used": plugins}):
        secrets.scan_files(*(str(path) for path in paths))
    found = [(file, item["type"], item["line_number"]) for file, items in secrets.json().items() for item in items]
    # Python is read by detect-secrets' keyword plugin, prose needs no such check: this one is for
    # units, scripts and configuration files.
    for path in (path for path in paths if path.suffix not in (".py", ".md")):
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if LITERAL_SECRET.search(line):
                found.append((str(path), "Literal secret", number))
    return found


def main(names: list[str]) -> int:
    paths = [Path(name) for name in names if not GENERATED.match(name) and Path(name).is_file()]
    found = sorted(findings(paths))
    for file, kind, line in found:
        print(f"{file}:{line}: {kind}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
