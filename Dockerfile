# One image, two commands: `igbridge-relay serve` (the relay) and `igbridge-operator`.
# Build: docker build -t igbridge:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY relay ./relay
COPY operator ./operator
COPY sandbox ./sandbox
# Wheels only: the final stage gets no compiler, no pip cache, no sources.
RUN python -m pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1 PIP_NO_CACHE_DIR=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels igbridge \
    && python -m pip uninstall -y pip setuptools wheel \
    && groupadd --system --gid 10001 igbridge \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin igbridge
USER 10001:10001
WORKDIR /data
EXPOSE 8080 8081
# The relay by default; the operator's Deployment runs `igbridge-operator`.
ENTRYPOINT []
CMD ["igbridge-relay", "serve", "--host", "0.0.0.0", "--port", "8080"]
