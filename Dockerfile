# The shared base of the five natterjack service images: Python 3.11 (slim), the pinned
# dependencies in /opt/venv, the shared code (libs/) and the contracts (proto/), the
# non-root user 10001. It holds no service: each service has its own image built FROM this
# one by deploy/docker/<service>.Dockerfile, which adds only that service's package.
#
#   docker build -t natterjack-base .
#   docker build -f deploy/docker/router.Dockerfile -t natterjack-router .
#
# compose.yaml builds them in that order by itself (the services' `additional_contexts`
# name this image). Configuration is only NJ_* environment variables
# (docs/configuration.md); logs are JSON lines on stdout (leave NJ_LOG_FILE unset).

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a virtualenv with the pinned dependencies ----------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Only the dependencies of pyproject.toml (not the project: the services run from the
# source tree in /app), so this layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
 && pip install -r /tmp/requirements.txt

COPY libs/ libs/
COPY proto/ proto/
RUN find libs -name '__pycache__' -prune -exec rm -rf {} + \
 && python -m compileall -q --invalidation-mode checked-hash libs

# ---- base: what every service image starts from ----------------------------------------
FROM ${PYTHON_IMAGE} AS base

LABEL org.opencontainers.image.title="natterjack-base" \
      org.opencontainers.image.description="natterjack IM backend: the base of the service images"

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
COPY --from=build /src/proto ./proto

USER 10001:10001

# No service here: run one of the service images. compose.yaml runs this image only for
# the one-shot auth-keygen (python -c ... libs.tokens).
STOPSIGNAL SIGTERM
CMD ["python", "-c", "print('natterjack-base: run a service image (deploy/docker/)')"]
