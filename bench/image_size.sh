#!/usr/bin/env bash
# Rebuild the Vigil image from scratch and print what it weighs: the whole image, the base, and the image's own
# layers (image minus base), plus an estimate on the real python:3.11-slim. Then smoke-test it: --help, the
# offline demo, the non-root user and the HEALTHCHECK. See docs/docker-README-section.md for the procedure.
#
#   bench/image_size.sh               cold build (--no-cache), measure, smoke-test
#   CACHE=1 bench/image_size.sh       reuse the build cache (faster; the build time is then meaningless)
#   STANDIN=1 bench/image_size.sh     no registry: first build a stand-in python:3.11-slim from Debian packages
#
# Environment: IMAGE (default vigil:measure), BASE (python:3.11-slim), REAL_SLIM_MB (130, the size of the real
# python:3.11-slim, used for the estimate), PIP_INDEX_URL / PIP_EXTRA_INDEX_URL / PIP_TRUSTED_HOST (default: this
# machine's pip configuration; only http(s) indexes are passed, and never one that carries credentials).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-vigil:measure}
BASE=${BASE:-python:3.11-slim}
REAL_SLIM_MB=${REAL_SLIM_MB:-130}
MB=1000000   # docker reports sizes in SI megabytes

die() { echo "image_size: $*" >&2; exit 1; }
command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable (start dockerd, or run as a user in the docker group)"

make_standin() {
    # A stand-in for python:3.11-slim when Docker Hub is unreachable: Debian bookworm minbase with Debian's
    # python3.11, python at /usr/local/bin like the official image, no EXTERNALLY-MANAGED marker, no apt lists/docs.
    command -v debootstrap >/dev/null || die "STANDIN=1 needs debootstrap (apt-get install -y debootstrap)"
    local rootfs
    rootfs=$(mktemp -d /tmp/vigil-standin-rootfs.XXXXXX)
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates,netbase,tzdata \
        bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
    rm -f "$rootfs"/usr/lib/python3.11/EXTERNALLY-MANAGED
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/apt/*
    find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    for name in python python3; do ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/$name"; done
    for name in pip pip3; do ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/$name"; done
    tar -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'ENV PYTHON_VERSION=3.11.2' --change 'CMD ["python3"]' \
        --message "stand-in for python:3.11-slim (debootstrap bookworm minbase + Debian python3.11)" - "$BASE" >/dev/null
    rm -rf "$rootfs"
    echo "built stand-in base $BASE"
}

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
    if [[ ${STANDIN:-0} == 1 ]]; then make_standin
    else docker pull "$BASE" >/dev/null || die "cannot pull $BASE; rerun with STANDIN=1 to build a stand-in"
    fi
fi

# this machine's package index, passed to the builder stage only
pip_setting() {  # env var name, pip config key
    local value=${!1:-}
    [[ -n $value ]] || value=$(python3 -m pip config get "$2" 2>/dev/null || true)
    echo "$value"
}
build_args=()
for pair in PIP_INDEX_URL:global.index-url PIP_EXTRA_INDEX_URL:global.extra-index-url PIP_TRUSTED_HOST:global.trusted-host; do
    name=${pair%%:*}
    urls=()
    for url in $(pip_setting "$name" "${pair#*:}"); do
        if [[ $name != PIP_TRUSTED_HOST && ! $url =~ ^https?:// ]]; then
            echo "note: $name $url is not reachable from a build, skipped"
        elif [[ $url =~ ://[^/@]+@ ]]; then
            die "$name carries credentials; they would land in the build history. Use a mirror without them."
        else
            urls+=("$url")
        fi
    done
    if ((${#urls[@]})); then build_args+=(--build-arg "$name=${urls[*]}"); fi
done

# certificates pip trusts here but the base image does not (a TLS-inspecting proxy): pip in the builder stage
# trusts them too (Dockerfile: BUILD_CA_CERTS); the runtime image never contains them
host_bundle=${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}
if [[ -n $host_bundle && -r $host_bundle ]]; then
    extra_ca=$(docker run --rm "$BASE" cat /etc/ssl/certs/ca-certificates.crt | python3 -c '
import re, sys
blocks = lambda text: re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, re.S)
base = set(blocks(sys.stdin.read()))
print("\n".join(b for b in blocks(open(sys.argv[1]).read()) if b not in base))' "$host_bundle")
    if [[ -n $extra_ca ]]; then
        echo "note: passing $(grep -c BEGIN <<<"$extra_ca") CA certificate(s) from $host_bundle to the builder stage"
        build_args+=(--build-arg "BUILD_CA_CERTS=$extra_ca")
    fi
fi

# BuildKit when the buildx plugin is there, else the classic builder (same Dockerfile)
if ! docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0; fi
cache_flag=(--no-cache)
[[ ${CACHE:-0} == 1 ]] && cache_flag=()

log=$(mktemp /tmp/vigil-image-build.XXXXXX.log)
echo "building $IMAGE on $BASE, log: $log"
start=$(date +%s)
docker build "${cache_flag[@]}" "${build_args[@]}" --build-arg "PYTHON_IMAGE=$BASE" -t "$IMAGE" . >"$log" 2>&1 \
    || { tail -30 "$log"; die "build failed (full log: $log)"; }
build_s=$(( $(date +%s) - start ))

size() { docker image inspect -f '{{.Size}}' "$1"; }
image_b=$(size "$IMAGE")
base_b=$(size "$BASE")
own_b=$((image_b - base_b))
echo
echo "== layers of $IMAGE above the base (docker history)"
base_layers=$(docker image inspect -f '{{len .RootFS.Layers}}' "$BASE")
docker history --no-trunc --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE" \
    | head -n "$(( $(docker history -q "$IMAGE" | wc -l) - $(docker history -q "$BASE" | wc -l) ))" \
    | awk -F'\t' '$1 != "0B" {printf "  %8s  %.100s\n", $1, $2}'
echo
echo "== largest packages in /opt/venv (MB, on disk)"
docker run --rm --entrypoint sh "$IMAGE" -c \
    'cd /opt/venv/lib/python3*/site-packages && du -sm -- * | sort -rn | head -12' | awk '{printf "  %5s  %s\n", $1, $2}'

echo
echo "== smoke test"
user=$(docker run --rm "$IMAGE" id -un)
health=$(docker image inspect -f '{{json .Config.Healthcheck.Test}}' "$IMAGE")
docker run --rm "$IMAGE" python main.py --help >/dev/null || die "python main.py --help failed in the image"
demo_start=$(date +%s.%N)
demo=$(docker run --rm "$IMAGE" python main.py demo --quiet) || die "the demo failed in the image"
demo_s=$(echo "$(date +%s.%N) - $demo_start" | bc)
echo "$demo" | sed 's/^/  /'
[[ $user != root ]] || die "the image runs as root"
# the stripped libraries still do their jobs: a chart renders, scikit-learn fits
docker run --rm "$IMAGE" python -c '
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from bot.charts import render_equity_chart
from storage.records import EquityPoint
from sklearn.ensemble import RandomForestClassifier
t0 = datetime(2025, 1, 1, tzinfo=UTC)
points = [EquityPoint(t0 + timedelta(hours=i), Decimal(1000), Decimal(1000 + i % 7 - 3), Decimal(0)) for i in range(48)]
png = render_equity_chart(points, title="smoke")
assert png.startswith(b"\x89PNG"), "not a PNG"
model = RandomForestClassifier(n_estimators=5, random_state=0).fit([[0], [1], [2], [3]], [0, 0, 1, 1])
assert list(model.predict([[0], [3]])) == [0, 1]
print(f"  chart: {len(png)} bytes of PNG; scikit-learn: fit and predict")' || die "chart or scikit-learn failed in the image"
# import time of every application module (what `run` loads), as the bot's user, with the image's byte-code
startup=$(docker run --rm "$IMAGE" python -c '
import subprocess, sys, time
start = time.monotonic()
subprocess.run([sys.executable, "docker/precompile.py"], check=True, capture_output=True)
print(f"{time.monotonic() - start:.1f}")') || die "the application does not import in the image"

echo
echo "== sizes (MB = 10^6 bytes, as docker reports them)"
printf '  base %-28s %6d MB\n' "$BASE" $((base_b / MB))
printf '  whole image %-21s %6d MB\n' "$IMAGE" $((image_b / MB))
printf '  own layers (image - base)         %6d MB   target <= 320\n' $((own_b / MB))
printf '  estimate on python:3.11-slim      %6d MB   (own + %d MB; target < 450)\n' \
    $((own_b / MB + REAL_SLIM_MB)) "$REAL_SLIM_MB"
printf '  build time (%s)             %6d s\n' "$([[ ${CACHE:-0} == 1 ]] && echo cached || echo no cache)" "$build_s"
printf '  demo in the container              %6.1f s   user %s, healthcheck %s\n' "$demo_s" "$user" "$health"
printf '  import of all application modules %6s s\n' "$startup"
