"""Tiny copies of the real datasets, written once per session in each dataset's exact on-disk format
(tests/helpers/real_fixtures.py); tests that change files work on their own copies."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import real_fixtures as fx


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    return fx.write_all(tmp_path_factory.mktemp("real_data"))


@pytest.fixture
def env(data_root, monkeypatch):
    """``DATA_ROOT`` set to the fixture copies."""
    monkeypatch.setenv("DATA_ROOT", str(data_root))
    return data_root
