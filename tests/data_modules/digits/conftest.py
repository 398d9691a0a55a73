"""The tiny digit datasets, written once per session (tests copy them before changing anything)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import digit_fixtures


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    return digit_fixtures.write_all(tmp_path_factory.mktemp("digit_data"))
