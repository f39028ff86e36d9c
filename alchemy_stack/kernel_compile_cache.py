"""A compile cache for the jsii kernel, so that `cdk synth` compiles aws-cdk-lib's and cdk-nag's JavaScript once.

aws-cdk-lib runs in a Node process (the jsii kernel) that Python starts on the first import of ``aws_cdk``.
Compiling the 25 MB of JavaScript this stack loads there is most of what its synth adds to an empty app's,
and Node 20 keeps no compile cache of its own (see ``kernel_compile_cache.js`` for why Node 22's would miss
too). :func:`use_compile_cache` has the kernel start on ``kernel-node``, which preloads that cache. It must
run before ``aws_cdk`` is first imported; ``alchemy_stack`` calls it as it is imported.

It changes nothing where the caller chose the kernel's node (``JSII_NODE`` set) or turned the cache off
(``ALCHEMY_JSII_COMPILE_CACHE`` set to an empty value), or where the kernel already runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

KERNEL_NODE = Path(__file__).resolve().with_name("kernel-node")
"""Starts node with the cache preloaded (``kernel_compile_cache.js``)."""

CACHE_VARIABLE = "ALCHEMY_JSII_COMPILE_CACHE"
"""The cache's directory; empty turns the cache off."""


def default_directory(environ: MutableMapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/alchemy/jsii-compile-cache``, the XDG default being ``~/.cache``."""
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "alchemy" / "jsii-compile-cache"


def use_compile_cache(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Has the jsii kernel, when it starts, load its modules through the compile cache; whether it will."""
    if "JSII_NODE" in environ or environ.get(CACHE_VARIABLE) == "" or "aws_cdk" in sys.modules:
        return False
    if CACHE_VARIABLE not in environ:
        try:
            environ[CACHE_VARIABLE] = str(default_directory(environ))
        except RuntimeError:  # no home directory to keep a cache in
            return False
    environ["JSII_NODE"] = str(KERNEL_NODE)
    return True
