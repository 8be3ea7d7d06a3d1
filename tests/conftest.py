"""The suite's fixtures live in one package, tests/fixtures/; this registers them for every
test. Each run (each xdist worker) makes its own PostgreSQL databases and drops them."""

pytest_plugins = [
    "tests.fixtures.databases",
    "tests.fixtures.app",
    "tests.fixtures.identity",
    "tests.fixtures.catalog",
    "tests.fixtures.servers",
    "tests.fixtures.faults",
]
