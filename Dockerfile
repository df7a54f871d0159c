# The reconciler daemon image: Python, git and the locked dependencies; no Envoy (proxies run their own image).
#
#   docker build -t reconciler:0.1.0 .
#   docker run --rm reconciler:0.1.0 run --help
#
# Reproducible: the base is an exact tag (pin its digest too once you mirror it: FROM python:...@sha256:...),
# and every Python package comes from deploy/requirements.lock (`make lock`), versions and hashes, the
# runtime subset of requirements.lock. tests/deploy/test_dockerfile.py checks these rules.

# ---- build: a virtualenv with the locked dependencies and the package --------------------------------
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/reconciler
COPY deploy/requirements.lock /src/deploy/requirements.lock
RUN /opt/reconciler/bin/pip install --require-hashes --no-deps -r /src/deploy/requirements.lock
COPY pyproject.toml README.md /src/
COPY reconciler /src/reconciler
# The build backend comes from the lock too: no build isolation, no unpinned download.
RUN /opt/reconciler/bin/pip install --no-deps --no-build-isolation /src

# ---- runtime -------------------------------------------------------------------------------------------
FROM python:3.11.14-slim-bookworm
# git: the daemon clones and fetches with the git CLI; openssh-client: SSH remotes with a deploy key.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client \
    && rm -rf /var/lib/apt/lists/*
# A fixed numeric non-root user, so Kubernetes' runAsNonRoot can check it without a passwd lookup.
RUN groupadd --system --gid 10001 reconciler \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/reconciler --shell /usr/sbin/nologin reconciler \
    && mkdir -p /var/lib/reconciler \
    && chown 10001:10001 /var/lib/reconciler
COPY --from=build /opt/reconciler /opt/reconciler
ENV PATH=/opt/reconciler/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/var/lib/reconciler
USER 10001:10001
WORKDIR /var/lib/reconciler
# 18000: ADS (gRPC) and proxies' metrics; 18001: status API, webhook, /healthz, /readyz, /metrics.
EXPOSE 18000 18001
ENTRYPOINT ["reconciler"]
CMD ["--help"]
