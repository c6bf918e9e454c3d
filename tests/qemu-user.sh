# shellcheck shell=bash
# Sourced by the emulated stages (tests/arm, tests/system): run aarch64 programs on this machine.

# Runs "$@" in a private mount namespace in which the kernel runs aarch64 binaries through qemu:
# binfmt_misc is mounted there and qemu-aarch64 registered (F: qemu is opened now, so it works
# inside a chroot too). Registering for the whole machine may not be allowed; this is.
with_qemu() {
    # shellcheck disable=SC2016  # expanded by the inner bash
    unshare --mount bash -c '
        set -e
        binfmt=/proc/sys/fs/binfmt_misc
        mount -t binfmt_misc binfmt_misc "$binfmt"
        [ -e "$binfmt/qemu-aarch64" ] || cat /usr/lib/binfmt.d/qemu-aarch64.conf > "$binfmt/register"
        exec "$@"
    ' with_qemu "$@"
}

# The aarch64 wheels edge-infer (its source in $4) needs for CPython $1 (e.g. 3.13), downloaded on this
# machine into $2 with the Python $3: the guests have no network. ai-edge-litert 2.x is tagged
# manylinux_2_27: without every manylinux tag pip would silently pick the old 1.x. Extra arguments go
# to pip download (constraints).
download_aarch64_wheels() {
    local python_version=$1 into=$2 host_python=$3 source_dir=$4
    shift 4
    local platforms=() minor
    for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_aarch64"); done
    platforms+=(--platform manylinux2014_aarch64 --platform linux_aarch64)
    mkdir -p "$into"
    "$host_python" -m pip wheel -q --no-deps -w "$into" "$source_dir" &&
        "$host_python" -m pip download -q --only-binary=:all: "${platforms[@]}" --python-version "$python_version" \
            --implementation cp -d "$into" "$into"/edge_infer-*.whl "setuptools>=68" "$@"
}
