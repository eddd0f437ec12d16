# The auth image: accounts, devices and tokens (HTTP 8091: /health, /ready, /metrics).
# Built FROM the shared base (the top-level Dockerfile: Python 3.11 slim, dependencies,
# libs/, proto/, user 10001); this file adds only services/auth/.
#
#   docker build -t natterjack-base .
#   docker build -f deploy/docker/auth.Dockerfile -t natterjack-auth .
#
# BASE_IMAGE names the base to build on (e.g. a registry tag of the same release);
# compose.yaml passes it as the build context "natterjack-base" instead.

ARG BASE_IMAGE=natterjack-base

# ---- build: the service package, compiled (the runtime file system is read-only) -------
FROM ${BASE_IMAGE} AS build
USER root
COPY services/__init__.py services/
COPY services/auth/ services/auth/
RUN find services -name '__pycache__' -prune -exec rm -rf {} + \
 && python -m compileall -q --invalidation-mode checked-hash services

# ---- runtime ----------------------------------------------------------------------------
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="natterjack-auth"

COPY --from=build /app/services ./services

USER 10001:10001
EXPOSE 8091

# SIGTERM: /ready turns 503 and the service drains within NJ_SHUTDOWN_DEADLINE_S (10 s).
STOPSIGNAL SIGTERM
CMD ["python", "-m", "services.auth"]
