"""tests/backup/ runs the app on a database of each test's own (tests/fixtures/backups.py), so
a backup holds only what its test made."""

from __future__ import annotations

import pytest

from server.runtime.settings import Settings
from tests.fixtures.backups import own_db

__all__ = ["own_db"]


@pytest.fixture
def settings(settings: Settings, own_db: str) -> Settings:
    return settings.with_database_url(own_db)
