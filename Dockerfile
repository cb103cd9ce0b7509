# syntax=docker/dockerfile:1
# One image for the whole platform: the IoT agents, the embedded NGSI-LD broker
# and the `metropole` command line. The compose stacks pick the role with the
# command (`metropole run`, `metropole broker`, ...); configuration comes from
# METROPOLE_* environment variables only (compose/README.md lists them all).
#
#   docker build -t metropole:0.1.0 .
#   docker run --rm -p 127.0.0.1:1026:1026 metropole:0.1.0
#
# No secret is ever copied or written into the image: passwords reach the
# containers as environment variables at run time (see compose/*/.env).

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---- build: install the project and its pinned dependencies into a venv ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/metropole
COPY pyproject.toml constraints.txt README.md ./
COPY models ./models
COPY adapters ./adapters
COPY agents ./agents
COPY broker ./broker
COPY metropole ./metropole
COPY compliance ./compliance
COPY web ./web
COPY storage ./storage
COPY indicators ./indicators
COPY dashboard ./dashboard
COPY demo ./demo
# Every dependency has a binary wheel for linux/amd64 and linux/arm64, so no
# compiler enters the image; versions come from constraints.txt.
RUN /opt/metropole/bin/pip install --no-cache-dir -c constraints.txt . \
    && /opt/metropole/bin/python -m compileall -q /opt/metropole/lib

# ---- runtime: the venv, a non-root user, nothing else ----
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="metropole" \
      org.opencontainers.image.description="NGSI-LD smart-city platform: IoT agents, embedded NGSI-LD broker, command line" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
ENV PATH=/opt/metropole/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    METROPOLE_DATA=/data \
    METROPOLE_LOG_LEVEL=INFO
RUN groupadd --system --gid 10001 metropole \
    && useradd --system --uid 10001 --gid metropole --home-dir /data --no-create-home --shell /usr/sbin/nologin metropole \
    && mkdir -p /data \
    && chown metropole:metropole /data
COPY --from=build /opt/metropole /opt/metropole
COPY compose/healthcheck.py /opt/metropole/healthcheck.py
WORKDIR /data
USER 10001:10001
# 1026 NGSI-LD broker, 4041 IoT agent provisioning, 7896 IoT agent HTTP, 8668 history
EXPOSE 1026 4041 7896 8668
# The health check asks the URL of METROPOLE_HEALTHCHECK_URL (default: the
# broker's /version); each compose service sets the URL of its own role.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=5 \
    CMD ["python", "/opt/metropole/healthcheck.py"]
ENTRYPOINT ["metropole"]
CMD ["run", "--host", "0.0.0.0", "--data", "/data"]
