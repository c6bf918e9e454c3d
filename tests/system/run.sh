#!/usr/bin/env bash
# The Pi install, for real: Debian trixie arm64 (the base of Raspberry Pi OS Trixie) booted with
# systemd as PID 1 under full-system emulation, with no network; in it, tests/system/guest.sh runs
# deploy.sh as a user would and checks the service on the kernel's vivid virtual camera.
#
#   sudo bash tests/system/run.sh     (as root: mmdebstrap and binfmt_misc)
#
# Environment: EDGE_INFER_TEST_DATA (default ../shared), EDGE_INFER_SYSTEM_CACHE (where the disk
# image, kernel and initrd are kept; default /var/cache/edge-infer-system; delete it for a cold run),
# DEBIAN_MIRROR (default http://deb.debian.org/debian), EDGE_INFER_SYSTEM_RESULTS (a directory to keep the guest's
# results in: checks.log with every check's output, journal.txt with the service's whole journal).
# Prints each check with ok/FAILED, then "N passed, N failed"; exits non-zero when anything failed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
data=$(realpath "${EDGE_INFER_TEST_DATA:-$repo/../shared}")
cache=${EDGE_INFER_SYSTEM_CACHE:-/var/cache/edge-infer-system}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
readonly boot_timeout=1800  # seconds for the whole guest run; it powers itself off when done
# What a Raspberry Pi OS Lite install has that deploy.sh relies on, plus the broker and V4L2 tools; libcamera with
# its IPA modules (vimc's among them), its Python bindings and `cam`, and what picamera2 imports that Debian packages
# (Raspberry Pi OS's python3-picamera2 brings the same); the headers, gcc and make to build vimc.ko.
readonly packages=(systemd systemd-sysv udev kmod linux-image-arm64 initramfs-tools passwd procps
    python3 python3-venv python3-pip ca-certificates curl mosquitto mosquitto-clients v4l-utils
    python3-libcamera libcamera-ipa libcamera-tools python3-pil python3-piexif python3-prctl
    linux-headers-arm64 make)
readonly initramfs_modules=(virtio_pci virtio_blk ext4)

say() { echo "system: $*" >&2; }

[ "$(id -u)" = 0 ] || { echo "tests/system/run.sh: run as root (mmdebstrap, binfmt_misc)" >&2; exit 2; }
[ -f "$data/models/mobilenet_v1_0.25_128_quant.tflite" ] ||
    { echo "tests/system/run.sh: no test data at $data (set EDGE_INFER_TEST_DATA)" >&2; exit 2; }

# shellcheck source=tests/qemu-user.sh
source "$repo/tests/qemu-user.sh"
work=$(mktemp -d /tmp/edge-infer-system.XXXXXX)
trap 'rm -rf "$work"' EXIT
started=$(date +%s)

install_tools() {
    local missing=()
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    command -v qemu-system-aarch64 >/dev/null || missing+=(qemu-system-arm)
    command -v qemu-img >/dev/null || missing+=(qemu-utils)
    command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
    command -v arch-test >/dev/null || missing+=(arch-test)
    command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# The image is rebuilt only when what goes into it changes: the packages, the modules, the boot unit.
image_key=$( { printf '%s\n' "${packages[@]}" "${initramfs_modules[@]}";
    cat "$repo/tests/system/edge-infer-system-test.service" "$repo/tests/system/build-vimc.sh"; } | sha256sum | cut -c1-16)
readonly image=$cache/trixie-arm64-$image_key.img
readonly kernel=$cache/trixie-arm64-$image_key.vmlinuz
readonly initrd=$cache/trixie-arm64-$image_key.initrd

build_image() {
    local rootfs=$work/rootfs
    say "building the trixie arm64 image with mmdebstrap and vimc.ko (about 20 minutes; cached afterwards in $cache)"
    # mmdebstrap: the host's apt resolves and downloads; only dpkg and maintainer scripts run under qemu.
    # A small initramfs (MODULES=list) that mounts the virtio disk: building the default one emulated is slow.
    # shellcheck disable=SC2016  # the hooks are run by mmdebstrap's shell, with the root filesystem as $1
    with_qemu mmdebstrap --arch=arm64 --variant=apt --include="$(IFS=,; echo "${packages[*]}")" \
        --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && echo MODULES=list > "$1/etc/initramfs-tools/conf.d/edge-infer"' \
        --essential-hook="printf '%s\n' ${initramfs_modules[*]} > \"\$1/etc/initramfs-tools/modules\"" \
        --customize-hook='echo edge-infer-test > "$1/etc/hostname"' \
        --customize-hook='echo "/dev/vda / ext4 defaults 0 1" > "$1/etc/fstab"' \
        --customize-hook="install -m 0644 '$repo/tests/system/edge-infer-system-test.service' \"\$1/etc/systemd/system/\"" \
        --customize-hook='systemctl --root="$1" enable edge-infer-system-test.service' \
        --customize-hook='systemctl --root="$1" mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer systemd-timesyncd.service' \
        --customize-hook="bash '$repo/tests/system/build-vimc.sh' \"\$1\" '$mirror' '$work'" \
        trixie "$rootfs" "$mirror" >"$work/mmdebstrap.log" 2>&1 || { tail -30 "$work/mmdebstrap.log"; return 1; }
    mkdir -p "$cache"
    cp "$(find "$rootfs/boot" -name 'vmlinuz-*' | sort | tail -1)" "$kernel.part"
    cp "$(find "$rootfs/boot" -name 'initrd.img-*' | sort | tail -1)" "$initrd.part"
    # An ext4 image made from the directory, without mounting anything.
    mkfs.ext4 -q -F -L root -d "$rootfs" "$image.part" 4G
    mv "$kernel.part" "$kernel" && mv "$initrd.part" "$initrd" && mv "$image.part" "$image"
}

install_tools
if [ -f "$image" ] && [ -f "$kernel" ] && [ -f "$initrd" ]; then
    say "image from $image"
else
    build_image
fi

# What the guest gets, on a raw tar disk (no network, no 9p): the repository as committed, the
# aarch64 wheels for trixie's Python 3.13, the models deploy.sh takes from --model-mirror, the checks.
payload=$work/payload
mkdir -p "$payload/src" "$payload/models"
git -C "$repo" archive HEAD | tar -x -C "$payload/src"
cp "$data/models/mobilenet_v1_0.25_128_quant.tflite" "$payload/models/"
host_python=${PYTHON:-$repo/.venv/bin/python}
[ -x "$host_python" ] || host_python=python3
say "downloading aarch64 wheels for Python 3.13"
download_aarch64_wheels 3.13 "$payload/wheels" "$host_python" "$payload/src" >"$work/pip.log" 2>&1 || { tail -5 "$work/pip.log"; exit 1; }
# picamera2 as PyPI has it (pure Python; 0.3.36 is the release edge-infer's Picamera2 code cites), with the two of its
# imports Debian does not package as Python 3.13 wheels; the rest it imports is in the image from Debian, and the
# DRM preview's pykms and PiDNG are stand-ins (tests/system/stubs).
"$host_python" -m pip download -q --no-deps --only-binary=:all: --platform manylinux2014_aarch64 \
    --python-version 3.13 --implementation cp -d "$payload/picamera2" \
    picamera2==0.3.36 videodev2==0.0.4 simplejpeg==1.9.0 >>"$work/pip.log" 2>&1 || { tail -5 "$work/pip.log"; exit 1; }
cp "$payload/src/tests/system/guest.sh" "$payload/guest.sh"
tar -cf "$work/payload.tar" -C "$payload" .
truncate -s 64M "$work/results.raw"
# The base image stays untouched: every run writes to its own overlay.
qemu-img create -q -f qcow2 -b "$image" -F raw "$work/overlay.qcow2"

say "booting the guest (qemu-system-aarch64, cortex-a72, 2 CPUs, 2 GB, no network)"
booted=$(date +%s)
status=0
timeout -s KILL "$boot_timeout" qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 2048 -nic none \
    -display none -monitor none -serial "file:$work/console.log" -no-reboot \
    -kernel "$kernel" -initrd "$initrd" -append "root=/dev/vda rw console=ttyAMA0 panic=-1 quiet loglevel=3 systemd.show_status=0" \
    -drive "if=virtio,file=$work/overlay.qcow2,format=qcow2" \
    -drive "if=virtio,file=$work/payload.tar,format=raw,readonly=on" \
    -drive "if=virtio,file=$work/results.raw,format=raw" || status=$?
say "the guest ran $(($(date +%s) - booted)) s (exit $status)"

mkdir -p "$work/results"
tar -xf "$work/results.raw" -C "$work/results" 2>/dev/null || true
if [ -n "${EDGE_INFER_SYSTEM_RESULTS:-}" ]; then
    mkdir -p "$EDGE_INFER_SYSTEM_RESULTS" && cp -r "$work/results/." "$EDGE_INFER_SYSTEM_RESULTS/"
fi
# The console carries the checks' lines as journald forwards them: "[time] bash[pid]: ok: ...".
grep -aoE '(ok|FAILED): .*' "$work/console.log" | tr -d '\r' || true
summary=$(grep -aoE '[0-9]+ passed, [0-9]+ failed' "$work/console.log" | tail -1 || true)
if [ -z "$summary" ]; then
    say "the guest did not finish (timeout or crash); the end of its console:"
    tail -40 "$work/console.log" | tr -d '\r' >&2
    summary="0 passed, 1 failed"
fi
if [ -f "$work/results/checks.log" ] && grep -q "^-- FAILED: " "$work/results/checks.log"; then
    say "what the failed checks printed (the end of each):"
    # checks.log holds each check's output under "== name"; a failed one ends with "-- FAILED: name".
    awk '/^== /{n=0} {buf[n++]=$0} /^-- FAILED: /{s=(n>30)?n-30:0; for(i=s;i<n;i++) print "  | " buf[i]}' \
        "$work/results/checks.log" >&2
fi
if ! [[ $summary =~ ", 0 failed" ]] && [ -f "$work/results/journal.txt" ]; then
    say "the service's journal:"
    tail -80 "$work/results/journal.txt" >&2
fi
say "took $(($(date +%s) - started)) s"
echo "$summary"
[[ $summary =~ ", 0 failed" ]]
