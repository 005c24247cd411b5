# syntax=docker/dockerfile:1
# Nexus server image: docs/deploy.md. Build: docker build -t nexus:0.1.0 .
# The base is pinned to an exact release; pin its digest too in a registry you control.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# -- build: compile the Cython extensions into the nexus wheel, gather every dependency wheel
FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential=12.9 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml CMakeLists.txt README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# -- runtime: slim Python, only the wheels installed (no index, no compiler), not root
FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="nexus" \
      org.opencontainers.image.description="AI-native real-time collaboration server" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/*
# Fixed UID/GID: the Helm chart's securityContext and fsGroup use the same numbers.
RUN groupadd --system --gid 10001 nexus \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/nexus --shell /usr/sbin/nologin nexus \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/nexus
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "nexus-rt==${VERSION}"
# Listen on every interface (a container's loopback is its own); the data directory is the
# volume below; JSON logs for collectors. With no secret configured the server makes a
# development one in the volume and prints a token (docker run); the chart sets a Secret.
ENV NEXUS_HOST=0.0.0.0 \
    NEXUS_HTTP_HOST=0.0.0.0 \
    NEXUS_PORT=8765 \
    NEXUS_HTTP_PORT=8766 \
    NEXUS_DATA_DIR=/var/lib/nexus \
    NEXUS_LOG_FORMAT=json \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# LMDB needs a local filesystem (no NFS/SMB): mount a local disk or block volume here.
VOLUME ["/var/lib/nexus"]
WORKDIR /var/lib/nexus
# WebSocket (also /healthz and /readyz), then the HTTP API (also /metrics).
EXPOSE 8765 8766
USER 10001:10001
# No curl in the image: the interpreter asks the HTTP port's liveness endpoint.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('NEXUS_HTTP_PORT', '8766') + '/healthz', timeout=2)"]
# tini reaps children and forwards SIGTERM (drain) and SIGUSR1 (start draining) to nexus.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["nexus", "serve"]
