"""Suite-wide collection: tests parametrized over a settings variant run in one test process per variant.

Each process synthesizes a variant once (tests/synth.py caches it) and a synthesis costs one to two seconds of
CPU; grouping the variant's tests (xdist's `loadgroup`, the default here) spares the other process a second one.
"""

from __future__ import annotations

import pytest


def pytest_itemcollected(item: pytest.Item) -> None:
    """Marked as each test is collected: xdist reads the groups into the test ids when collection ends, before
    any ``pytest_collection_modifyitems`` of a conftest runs."""
    callspec = getattr(item, "callspec", None)
    variant = callspec.params.get("variant") if callspec is not None else None
    if isinstance(variant, str) and item.get_closest_marker("xdist_group") is None:
        item.add_marker(pytest.mark.xdist_group(f"variant-{variant}"))
