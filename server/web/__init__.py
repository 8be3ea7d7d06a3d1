"""HTTP plumbing every domain uses: routing, request parsing and responses, errors and
problem+json, conditional requests, pagination, access declarations, OpenAPI and the docs page."""
