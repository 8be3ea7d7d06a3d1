"""The suite's fixtures live in one package, tests/fixtures/; this registers them for every
test. Each run (each xdist worker) makes its own PostgreSQL databases and drops them."""

from hypothesis import settings

# Before any test module builds its @settings, which inherit from the loaded profile. Property
# tests check behaviour, not speed: Hypothesis's default 200 ms deadline per example failed a
# run on a loaded machine (311 ms in tests/middleware/test_request_id.py) with nothing wrong.
settings.register_profile("hotpath", deadline=None)
settings.load_profile("hotpath")

pytest_plugins = [
    "tests.fixtures.databases",
    "tests.fixtures.app",
    "tests.fixtures.identity",
    "tests.fixtures.catalog",
    "tests.fixtures.orders",
    "tests.fixtures.servers",
    "tests.fixtures.faults",
    "tests.fixtures.scheduling",
]
