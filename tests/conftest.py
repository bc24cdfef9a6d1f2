"""Test-suite options: ``--long`` runs the exhaustive simulator sweeps (thousands of seeds, 50+ nodes)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    parser.addoption("--long", action="store_true", default=False,
                     help="also run the long simulator sweeps (thousands of seeds, clusters of 50+ nodes)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--long"):
        return
    skip = pytest.mark.skip(reason="long run: use --long")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)
