# Vigil — two stages: the builder installs the wheels into /opt/venv and strips what never runs (tests, byte-code,
# sources, symbol tables); the runtime stage copies only that venv and the application. Measure with bench/image_size.sh.
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
# binutils' strip for the libraries' extension modules (builder only)
RUN apt-get update && apt-get install -y --no-install-recommends binutils && rm -rf /var/lib/apt/lists/*
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
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DB_PATH=/data/vigil.sqlite3 \
    DATA_DIR=/data \
    MPLCONFIGDIR=/tmp/matplotlib
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /app --shell /usr/sbin/nologin vigil \
    && mkdir -p /data && chown vigil:vigil /data
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# the application (see .dockerignore: no tests, caches, local data or secrets); owned by root, read-only to vigil
COPY . .
# Byte-code only for what the bot loads at start: importing every application module once writes it next to the
# sources (the venv came without any). The bot's user cannot write there, so other modules compile in memory.
# Importing matplotlib also builds its font cache in MPLCONFIGDIR, which the bot's user may then update.
RUN python docker/precompile.py && mkdir -p "$MPLCONFIGDIR" && chown -R vigil:vigil "$MPLCONFIGDIR"

USER vigil
VOLUME ["/data"]
HEALTHCHECK --interval=60s --timeout=15s --start-period=120s --retries=3 \
    CMD ["python", "main.py", "health"]
# the same commands as outside Docker: `docker run IMAGE python main.py demo`, `docker compose run --rm vigil
# python main.py health`
CMD ["python", "main.py", "run"]
