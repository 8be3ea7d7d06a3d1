# syntax=docker/dockerfile:1
# hotpath API image: `docker build -t hotpath .`
# One granian worker per container (HOTPATH_WORKERS defaults to 1); scale with replicas.
# Every dependency ships manylinux wheels, so neither stage needs apt or a compiler; the lock
# (requirements/runtime.txt) is resolved for CPython 3.11 on linux x86_64, this base image.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"

WORKDIR /src
# The dependencies from the lock (docs/decisions/0008-locked-dependencies.md): exact versions,
# and pip refuses any file whose sha256 the lock does not list, so a build next month installs
# the same bytes. Its own layer, rebuilt only when the lock changes.
COPY requirements/runtime.txt requirements/build.txt requirements/
RUN pip install --no-cache-dir --require-hashes -r requirements/runtime.txt

COPY pyproject.toml README.md ./
COPY server/ server/
COPY middleware/ middleware/
COPY sql/ sql/
COPY migrations/ migrations/
# hotpath itself, with --no-deps: nothing is resolved past the lock. Its wheel is built by the
# locked build backend in a venv of its own (/opt/build stays in this stage), then installed
# regular, not editable: the packages, sql/ and migrations/ land in the venv's site-packages,
# byte-compiled, so the runtime stage needs nothing from /src. The check runs isolated (-I)
# so it imports the installed copy, not /src.
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --require-hashes -r requirements/build.txt \
    && /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
    && pip install --no-cache-dir --no-deps /tmp/dist/hotpath-*.whl \
    && pip check \
    && python -I -c "import middleware, server.runtime.paths as p; assert p.SQL_DIR.is_dir() and p.MIGRATIONS_DIR.is_dir()"

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="hotpath" \
      org.opencontainers.image.description="A production REST API server built for throughput" \
      org.opencontainers.image.licenses="MIT"

RUN groupadd --system --gid 10001 hotpath \
    && useradd --system --no-log-init --uid 10001 --gid hotpath \
       --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin hotpath

COPY --from=builder /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:${PATH}" \
    VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOTPATH_ENV=production \
    HOTPATH_HOST=0.0.0.0 \
    HOTPATH_PORT=8000

WORKDIR /app
USER 10001:10001

EXPOSE 8000

# No curl in slim images: probe /livez with the standard library (non-2xx raises).
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('HOTPATH_PORT', '8000'), timeout=2)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "server"]
CMD ["serve"]
