"""Order tests reuse the identity fixtures (app, http client, accounts)."""

from __future__ import annotations

from tests.identity.conftest import accounts, app, http, settings

__all__ = ["accounts", "app", "http", "settings"]
