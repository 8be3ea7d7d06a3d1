"""The backup metric in a real scrape of `python -m server serve --workers 2` (multiprocess
mode, tests/deploy/conftest.py): one sample for the server, not one per worker."""

from __future__ import annotations

import re

from server.backup.metrics import NAME


def test_two_workers_export_one_backup_timestamp(live_scrape: str) -> None:
    samples = re.findall(rf"^{NAME}(\{{[^}}]*\}})? (\S+)$", live_scrape, re.MULTILINE)
    assert len(samples) == 1, samples
    labels, value = samples[0]
    assert labels == ""
    assert float(value) >= 0.0
    assert f"# TYPE {NAME} gauge" in live_scrape
