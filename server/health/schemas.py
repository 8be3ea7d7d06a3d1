"""Response shapes of the probes (for the OpenAPI document)."""

import msgspec


class Liveness(msgspec.Struct):
    status: str


class ReadinessView(msgspec.Struct):
    status: str
    checks: dict[str, str]
