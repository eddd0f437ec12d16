# The gateway image: the client entry point (HTTP API, /health, /ready, /metrics on 8080;
# WebSocket /ws on 8081).
# Built FROM the shared base (the top-level Dockerfile: Python 3.11 slim, dependencies,
# libs/, proto/, user 10001); this file adds only services/gateway/.
#
#   docker build -t natterjack-base .
#   docker build -f deploy/docker/gateway.Dockerfile -t natterjack-gateway .
#
# BASE_IMAGE names the base to build on (e.g. a registry tag of the same release);
# compose.yaml passes it as the build context "natterjack-base" instead.

ARG BASE_IMAGE=natterjack-base

# ---- build: the service package, compiled (the runtime file system is read-only) -------
FROM ${BASE_IMAGE} AS build
USER root
COPY services/__init__.py services/
COPY services/gateway/ services/gateway/
RUN find services -name '__pycache__' -prune -exec rm -rf {} + \
 && python -m compileall -q --invalidation-mode checked-hash services

# ---- runtime ----------------------------------------------------------------------------
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="natterjack-gateway"

COPY --from=build /app/services ./services

USER 10001:10001
EXPOSE 8080 8081

# SIGTERM: /ready turns 503 and the service drains within NJ_SHUTDOWN_DEADLINE_S (10 s).
STOPSIGNAL SIGTERM
CMD ["python", "-m", "services.gateway"]
