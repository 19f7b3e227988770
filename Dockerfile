# Vigil — two stages: the builder installs the wheels into /opt/venv and strips what never runs; the runtime
# stage copies only that venv and the application. Measure with bench/image_size.sh.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
# Package index of the build machine, if it is not PyPI (a mirror or proxy). Build args live in the builder
# stage only, so they never reach the runtime image or its history; do not pass credentials through them.
# BUILD_CA_CERTS: PEM certificates the build machine trusts beyond Debian's bundle (a TLS-inspecting proxy's CA);
# pip in this stage trusts them too. Public certificates, not secrets; the runtime stage never sees them.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG BUILD_CA_CERTS
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# wheels only (no compiler in the image), no byte-code: the runtime compiles what it imports into /tmp
RUN if [ -n "$BUILD_CA_CERTS" ]; then \
        cat /etc/ssl/certs/ca-certificates.crt > /tmp/build-ca.pem \
        && printf '%s\n' "$BUILD_CA_CERTS" >> /tmp/build-ca.pem && export PIP_CERT=/tmp/build-ca.pem; \
    fi \
    && /opt/venv/bin/python -m pip install --no-compile --only-binary=:all: -r /tmp/requirements.txt \
    && rm -f /tmp/build-ca.pem
COPY docker/strip-site-packages.sh /tmp/strip-site-packages.sh
RUN sh /tmp/strip-site-packages.sh /opt/venv

FROM ${PYTHON_IMAGE}
# Byte-code of the libraries is not shipped (it would be a third of the image); Python compiles what it
# imports on the first start into PYTHONPYCACHEPREFIX, a writable path that survives container restarts.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONPYCACHEPREFIX=/tmp/pycache \
    DB_PATH=/data/vigil.sqlite3 \
    DATA_DIR=/data \
    MPLCONFIGDIR=/tmp/matplotlib
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /app vigil \
    && mkdir -p /data && chown vigil:vigil /data
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# the application (see .dockerignore: no tests, caches, local data or secrets); owned by root, read-only to vigil
COPY . .

USER vigil
VOLUME ["/data"]
HEALTHCHECK --interval=60s --timeout=15s --start-period=120s --retries=3 \
    CMD ["python", "main.py", "health"]
# the same commands as outside Docker: `docker run IMAGE python main.py demo`, `docker compose run --rm vigil
# python main.py health`
CMD ["python", "main.py", "run"]
