"""Where synth writes the node bundle before CDK stages a copy into ``cdk.out``.

One definition for the two that need it: :mod:`alchemy_constructs.node_bundle`, which writes there, and the
pull request comment's bundle diff (``alchemy_tools/diff_user_data.py``), which reads there and must not
import CDK. So this module imports nothing but the standard library.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

STAGING_DIRECTORY = Path(tempfile.gettempdir()) / f"alchemy-node-bundles-{os.getuid()}"
"""One directory per user; archives are named by content, so synths share it, and it keeps earlier synths'
bundles for the diff comment to compare."""
