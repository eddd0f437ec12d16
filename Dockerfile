# One image for the five natterjack services (auth, router, history, delivery-retry,
# gateway). The service is chosen by the command:
#
#   docker build -t natterjack:dev .
#   docker run --rm natterjack:dev python -m services.router
#
# compose.yaml and deploy/k8s/ set the command of each service; the default below runs the
# gateway. Configuration is only NJ_* environment variables (docs/configuration.md); logs
# are JSON lines on stdout (leave NJ_LOG_FILE unset).

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a virtualenv with the dependencies and the project --------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# The pinned dependencies first, read from pyproject.toml, so that this layer is rebuilt
# only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
 && pip install -r /tmp/requirements.txt

COPY libs/ libs/
COPY services/ services/
COPY proto/ proto/

# The project itself (its `natterjack` command). The services run from the source tree in
# /app (each reads its SQL migrations from services/<svc>/migrations/ next to its code).
RUN pip install --no-deps . \
 && rm -rf build *.egg-info \
 && find libs services -name '__pycache__' -prune -exec rm -rf {} + \
 && python -m compileall -q --invalidation-mode checked-hash libs services

# ---- runtime -----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="natterjack" \
      org.opencontainers.image.description="natterjack IM backend: auth, router, history, delivery-retry, gateway"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NJ_PROTO_DIR=/app/proto \
    NJ_HTTP_HOST=0.0.0.0

# Non-root user 10001. /var/lib/natterjack/keys is where compose.yaml keeps the signing key
# of auth (a named volume takes the owner and mode of this directory when first mounted).
RUN groupadd --system --gid 10001 natterjack \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin natterjack \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/natterjack /var/lib/natterjack/keys

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
COPY --from=build /src/libs ./libs
COPY --from=build /src/services ./services
COPY --from=build /src/proto ./proto

USER 10001:10001

# gateway: 8080 (HTTP API, /health, /ready, /metrics) and 8081 (WebSocket /ws);
# auth 8091, router 8092, history 8093, delivery-retry 8094 (/health, /ready, /metrics).
EXPOSE 8080 8081 8091 8092 8093 8094

# SIGTERM drains the service within NJ_SHUTDOWN_DEADLINE_S (default 10 s).
STOPSIGNAL SIGTERM
CMD ["python", "-m", "services.gateway"]
