# syntax=docker/dockerfile:1
# One image, two commands: `igbridge-relay serve` (the relay) and `igbridge-operator`.
# Build: docker build -t igbridge:0.1.0 .
# (VERSION below, pyproject.toml's version and the chart's appVersion are the same: a test
# checks it.)
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Dependencies first, exactly as pinned in requirements.lock (scripts/lock.py writes it):
# this layer is reused by every build until the lock changes, whatever the sources do.
COPY requirements.lock ./
RUN python -m pip wheel --wheel-dir /deps --requirement requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY relay ./relay
COPY operator ./operator
COPY sandbox ./sandbox
# Wheels only: the final stage gets no compiler, no pip cache, no sources.
RUN python -m pip wheel --wheel-dir /app --no-deps .

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="igbridge" \
      org.opencontainers.image.description="Instagram customer service in Genesys Cloud: relay and Kubernetes operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/igbridge/igbridge"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The dependencies' layer, cached like the build stage's.
RUN --mount=type=bind,from=build,source=/deps,target=/deps \
    --mount=type=bind,source=requirements.lock,target=/tmp/requirements.lock \
    python -m pip install --no-index --find-links=/deps --requirement /tmp/requirements.lock \
    && groupadd --system --gid 10001 igbridge \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin igbridge
# igbridge itself; pip check fails the build if the lock does not satisfy it.
RUN --mount=type=bind,from=build,source=/app,target=/app \
    python -m pip install --no-index --no-deps /app/igbridge-*.whl \
    && python -m pip check \
    && python -m pip uninstall -y pip setuptools wheel
USER 10001:10001
WORKDIR /data
EXPOSE 8080 8081 9090
# The relay by default; the operator's Deployment runs `igbridge-operator`.
ENTRYPOINT []
CMD ["igbridge-relay", "serve", "--host", "0.0.0.0", "--port", "8080"]
