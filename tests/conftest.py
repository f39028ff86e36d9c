"""Test session setup shared by every test module."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from alchemy_stack import stack


def pytest_configure(config: pytest.Config) -> None:
    """Until the services' build context is in the repository, in-process synths use a stand-in.

    The stack's image assets only stage their directory at synth; a minimal Dockerfile with the
    two build targets is all a synth reads. Once ``alchemy_services/Dockerfile`` exists this does
    nothing.
    """
    if not (stack.SERVICE_IMAGES_DIRECTORY / "Dockerfile").is_file():
        stand_in = Path(tempfile.mkdtemp(prefix="alchemy-services-stand-in-"))
        (stand_in / "Dockerfile").write_text("FROM scratch AS router\nFROM scratch AS hello_world\n")
        stack.SERVICE_IMAGES_DIRECTORY = stand_in
