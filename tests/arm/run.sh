#!/usr/bin/env bash
# The golden tests on arm64: Debian bookworm (Python 3.11, as Raspberry Pi OS Bookworm) under qemu
# user-mode emulation, with the real aarch64 wheels of our dependencies and the real CLI.
#
#   sudo bash tests/arm/run.sh        (as root: it runs debootstrap, chroot and binfmt_misc)
#
# Environment: EDGE_INFER_TEST_DATA (default ../shared), EDGE_INFER_ARM_CACHE (where the finished
# root filesystem is kept as a tarball; default /var/cache/edge-infer-arm; delete it for a cold run),
# DEBIAN_MIRROR (default http://deb.debian.org/debian).
# Prints "N passed, N failed" and exits non-zero when anything failed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
data=$(realpath "${EDGE_INFER_TEST_DATA:-$repo/../shared}")
cache=${EDGE_INFER_ARM_CACHE:-/var/cache/edge-infer-arm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The name changes with the package list, so a changed list builds a new root filesystem.
readonly guest_packages=python3,python3-venv,python3-pip,python3-numpy,python3-pywt,systemd
readonly rootfs_tar=$cache/bookworm-arm64-${guest_packages//,/-}.tar
# qemu can hang after a crash in the guest instead of exiting: every emulated command gets a limit.
readonly guest_timeout=600

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { failed=$((failed + 1)); echo "FAILED: $*"; }
say() { echo "arm: $*" >&2; }

[ "$(id -u)" = 0 ] || { echo "tests/arm/run.sh: run as root (debootstrap, chroot, binfmt_misc)" >&2; exit 2; }
if [ ! -d "$data/models" ] || [ ! -d "$data/images" ]; then
    echo "tests/arm/run.sh: no test data at $data (set EDGE_INFER_TEST_DATA)" >&2
    exit 2
fi

# shellcheck source=tests/qemu-user.sh
source "$repo/tests/qemu-user.sh"
work=$(mktemp -d /tmp/edge-infer-arm.XXXXXX)
trap 'rm -rf "$work"' EXIT

install_tools() {
    local missing=()
    command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

build_rootfs() {
    local rootfs=$1
    say "debootstrap bookworm arm64 (a few minutes; cached afterwards in $rootfs_tar)"
    debootstrap --arch=arm64 --foreign --variant=minbase --include="$guest_packages" \
        bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
        { tail -20 "$work/debootstrap.log"; return 1; }
    # With /.dockerenv present debootstrap makes proc a symlink to the host's /proc; the second
    # stage and our mounts need a directory.
    if [ -L "$rootfs/proc" ]; then rm "$rootfs/proc" && mkdir "$rootfs/proc"; fi
    with_qemu timeout -s KILL 1500 chroot "$rootfs" /debootstrap/debootstrap --second-stage \
        >>"$work/debootstrap.log" 2>&1 ||
        { tail -20 "$work/debootstrap.log"; return 1; }
    mkdir -p "$cache"
    tar --numeric-owner -C "$rootfs" -cf "$rootfs_tar.part" . && mv "$rootfs_tar.part" "$rootfs_tar"
}

# A Raspberry Pi 4's cpuinfo: with the host's x86 one, XNNPACK's CPU detection crashes under qemu 7.2.
arm_cpuinfo() {
    for cpu in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$cpu"
        printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
    done
    printf 'Revision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n'
}

install_tools
rootfs=$work/rootfs
mkdir -p "$rootfs"
started=$(date +%s)
if [ -f "$rootfs_tar" ]; then
    say "root filesystem from $rootfs_tar"
    tar --numeric-owner -C "$rootfs" -xf "$rootfs_tar"
else
    build_rootfs "$rootfs"
fi

host_python=${PYTHON:-$repo/.venv/bin/python}
[ -x "$host_python" ] || host_python=python3
say "downloading aarch64 wheels"
download_aarch64_wheels 3.11 "$rootfs/wheels" "$host_python" "$repo" >"$work/pip.log" 2>&1 || { tail -5 "$work/pip.log"; exit 1; }
litert=$(find "$rootfs/wheels" -name 'ai_edge_litert-*.whl' -printf '%f\n')
say "wheels: $litert and $(find "$rootfs/wheels" -name '*.whl' | wc -l) others"

cpuinfo=$work/cpuinfo
arm_cpuinfo >"$cpuinfo"
cat >"$rootfs/run-tests.sh" <<'GUEST'
set -e
python3 -m venv /opt/venv
/opt/venv/bin/pip install -q --no-index --find-links /wheels edge-infer
GUEST

# Everything emulated runs in one private mount namespace: /proc with the ARM cpuinfo over it,
# /dev, /sys, and the test data read-only at /data.
guest() {
    # shellcheck disable=SC2016  # expanded by the inner bash, from its arguments
    with_qemu bash -c '
        set -e
        root=$1; cpuinfo=$2; data=$3; limit=$4; shift 4
        mount -t proc proc "$root/proc"
        mount --bind "$cpuinfo" "$root/proc/cpuinfo"
        mount --rbind /dev "$root/dev"
        mount --rbind /sys "$root/sys"  # XNNPACK reads the CPU topology there
        mkdir -p "$root/data"
        mount --bind -o ro "$data" "$root/data"
        # QEMU_CPU is read by qemu at every exec, so it stays in the guest environment too.
        exec timeout -s KILL "$limit" chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root \
            LANG=C.UTF-8 QEMU_CPU=cortex-a72 "$@"
    ' guest "$rootfs" "$cpuinfo" "$data" "$guest_timeout" "$@"
}

say "installing edge-infer and its aarch64 wheels into a venv in the guest"
if guest bash /run-tests.sh >"$work/install.log" 2>&1; then
    pass "pip install of the aarch64 wheels in arm64 Debian"
else
    fail "pip install in the guest: $(tail -3 "$work/install.log")"
fi
if [ "$(guest uname -m)" = aarch64 ]; then pass "the guest is aarch64"; else fail "the guest is not aarch64"; fi

# Golden labels, and the same top-1 as x86 for every image.
declare -A golden=(
    [mobilenet_v2_1.0_224_quant/grace_hopper.bmp]="military uniform"
    [mobilenet_v2_1.0_224_quant/parrot.jpg]="macaw"
    [mobilenet_v2_1.0_224_quant/bird.bmp]="chickadee"
    [mobilenet_v1_0.75_192_quant/grace_hopper.bmp]="military uniform"
    [mobilenet_v1_0.75_192_quant/parrot.jpg]="macaw"
    [mobilenet_v1_0.75_192_quant/bird.bmp]="chickadee"
    [mobilenet_v1_0.25_128_quant/parrot.jpg]="macaw"
    [mobilenet_v1_0.25_128_quant/bird.bmp]="chickadee"
)
top1() {  # JSON lines on stdin -> "image<TAB>label" lines
    "$host_python" -c '
import json, os, sys
for line in sys.stdin:
    result = json.loads(line)
    print(os.path.basename(result["path"]) + "\t" + result["top"][0]["label"])'
}
for model in mobilenet_v2_1.0_224_quant mobilenet_v1_0.75_192_quant mobilenet_v1_0.25_128_quant; do
    say "classifying ../shared/images with $model on arm64"
    if ! guest /opt/venv/bin/edge-infer run --model "/data/models/$model.tflite" --source /data/images \
        --top-k 1 >"$work/arm.jsonl" 2>"$work/arm.err"; then
        fail "$model on arm64: $(tail -2 "$work/arm.err")"
        continue
    fi
    if grep -q "Created TensorFlow Lite XNNPACK delegate" "$work/arm.err"; then
        pass "$model: LiteRT created the XNNPACK delegate on arm64"
    else
        fail "$model: no XNNPACK delegate on arm64: $(head -c 600 "$work/arm.err")"
    fi
    top1 <"$work/arm.jsonl" >"$work/arm.txt"
    (cd "$work" && "$host_python" -m edge_infer run --model "$data/models/$model.tflite" --source "$data/images" --top-k 1 \
        --log-level warning 2>/dev/null) | top1 >"$work/x86.txt"
    while IFS=$'\t' read -r image label; do
        x86=$(awk -F'\t' -v i="$image" '$1 == i {print $2}' "$work/x86.txt")
        if [ "$label" = "$x86" ]; then
            pass "$model $image: arm64 and x86 agree ($label)"
        else
            fail "$model $image: arm64 says '$label', x86 says '$x86'"
        fi
        expected=${golden[$model/$image]:-}
        if [ -n "$expected" ]; then
            if [ "$label" = "$expected" ]; then pass "$model $image is $expected on arm64"
            else fail "$model $image: expected '$expected' on arm64, got '$label'"; fi
        fi
    done <"$work/arm.txt"
done

say "an MJPG video on arm64: its JPEGs decoded at 1/2 scale by the aarch64 wheel's libjpeg"
"$host_python" -c '
import sys, cv2
writer = cv2.VideoWriter(sys.argv[1], cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
for name in ("parrot.jpg", "parrot.jpg", "bird.bmp", "bird.bmp"):
    writer.write(cv2.resize(cv2.imread(sys.argv[2] + "/images/" + name), (640, 480)))
writer.release()' "$rootfs/tmp/clip.avi" "$data"
if guest /opt/venv/bin/edge-infer run --model /data/models/mobilenet_v2_1.0_224_quant.tflite --source /tmp/clip.avi \
    --top-k 1 >"$work/video.jsonl" 2>"$work/video.err"; then
    labels=$("$host_python" -c '
import json, sys
print(",".join(json.loads(line)["top"][0]["label"] for line in sys.stdin))' <"$work/video.jsonl")
    if grep -q "decoding its JPEGs at 1/2 scale" "$work/video.err" && [ "$labels" = "macaw,macaw,chickadee,chickadee" ]; then
        pass "an MJPG video's JPEGs decoded at 1/2 scale on arm64, frame by frame right ($labels)"
    else
        fail "MJPG video on arm64: labels '$labels'; $(grep -m1 "JPEG\|error" "$work/video.err")"
    fi
else
    fail "MJPG video on arm64: $(tail -2 "$work/video.err")"
fi

say "edge-infer bench --quick on arm64"
if guest /opt/venv/bin/edge-infer bench /data/models/mobilenet_v1_0.25_128_quant.tflite --quick --threads 1 \
    --runs 5 --frames 5 --seconds 0 --json >"$work/bench.json" 2>"$work/bench.err" &&
    "$host_python" -c '
import json, sys
[result] = json.load(open(sys.argv[1]))["results"]
assert result["invoke"]["fps"] > 0 and result["pipeline"]["fps"] > 0, result
assert json.load(open(sys.argv[1]))["conditions"]["machine"] == "aarch64"
print("  arm64 (emulated) invoke p50 %.1f ms" % result["invoke"]["p50_ms"])' "$work/bench.json"; then
    pass "bench --quick runs on arm64 (XNNPACK path)"
else
    fail "bench on arm64: $(tail -3 "$work/bench.err")"
fi

# deploy.sh on Bookworm keeps apt's numpy 1.24 in the venv: python3-pywt (from apt, built against
# numpy 1, like python3-picamera2's simplejpeg) must still import from the venv, and edge-infer must
# still give the golden labels (with the OpenCV pip picks under the constraint).
say "deploy.sh's venv step on arm64 Bookworm, whose apt numpy is 1.x"
apt_numpy=$(guest python3 -c 'import numpy, sys; sys.stdout.write(numpy.__version__)')
mkdir -p "$rootfs/src"
echo "numpy==$apt_numpy" >"$work/constraints.txt"
download_aarch64_wheels 3.11 "$rootfs/wheels-apt-numpy" "$host_python" "$repo" -c "$work/constraints.txt" >"$work/pip.log" 2>&1 ||
    { tail -5 "$work/pip.log"; exit 1; }
git -C "$repo" ls-files -z | (cd "$repo" && xargs -0 cp --parents -t "$rootfs/src")
if guest env PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels-apt-numpy bash /src/deploy.sh --root /tmp/pi \
    --model-mirror /data/models >"$work/deploy.log" 2>&1; then
    pass "deploy.sh --root on arm64 Bookworm"
else
    fail "deploy.sh on arm64 Bookworm: $(tail -3 "$work/deploy.log")"
fi
if grep -q "keeping apt's numpy==$apt_numpy" "$work/deploy.log"; then
    pass "deploy.sh pins apt's numpy $apt_numpy"
else
    fail "deploy.sh did not pin numpy $apt_numpy: $(tail -3 "$work/deploy.log")"
fi
venv_python=/tmp/pi/opt/edge-infer/venv/bin/python
versions=$(guest "$venv_python" -c 'import numpy, cv2, pywt; print(numpy.__version__, cv2.__version__)' 2>&1 ||
    true)
if [ "${versions%% *}" = "$apt_numpy" ]; then
    pass "in the venv, apt's python3-pywt imports on numpy $apt_numpy (OpenCV ${versions##* })"
else
    fail "apt's python3-pywt in the venv: $versions"
fi
label=$(guest /tmp/pi/opt/edge-infer/venv/bin/edge-infer run --model /data/models/mobilenet_v1_0.75_192_quant.tflite \
    --source /data/images/grace_hopper.bmp --top-k 1 --log-level error 2>"$work/numpy1.err" | top1 | cut -f2)
if [ "$label" = "military uniform" ]; then
    pass "golden label with numpy $apt_numpy"
else
    fail "numpy $apt_numpy: expected 'military uniform', got '$label' $(tail -2 "$work/numpy1.err")"
fi

say "took $(($(date +%s) - started)) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
