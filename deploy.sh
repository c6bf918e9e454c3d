#!/usr/bin/env bash
# Install edge-infer as a systemd service on Raspberry Pi OS (Bookworm, Trixie) or Debian.
#
#   sudo ./deploy.sh                 install or update, enable and start the service
#   sudo ./deploy.sh --uninstall     remove the service and the venv; keep config and models
#   sudo ./deploy.sh --uninstall --purge   remove config, models and the system user as well
#   ./deploy.sh --dry-run            print what would be done, change nothing
#   ./deploy.sh --root DIR           install the files under DIR (tests, image builds): no apt,
#                                    no user, no start; the unit is enabled with systemctl --root
#
# Running it twice changes nothing the second time. A config at /etc/edge-infer/config.yaml that a
# user edited is never overwritten; the shipped one is put beside it as config.yaml.dist.
# Exit status: 0 done, 1 a step failed (the last line names it), 2 refused (options, model, system).
set -euo pipefail

readonly SERVICE=edge-infer
readonly SERVICE_USER=edge-infer
readonly DEFAULT_MODEL=tf2_mobilenet_v2_1.0_224_ptq.tflite
# sha256 of the Coral test_data files; a download that does not match is deleted.
declare -A MODEL_SHA256=(
    [tf2_mobilenet_v2_1.0_224_ptq.tflite]=5d3137241276e79c86d14a74fe43581398ae0e815191d3dba45495b810840e8c
    [mobilenet_v2_1.0_224_quant.tflite]=7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776
    [mobilenet_v1_0.75_192_quant.tflite]=41daeb22fdcf947e0e5ec32373aa9df7c31f3ef45dbd0ef7b5940fbce3c20f6a
    [mobilenet_v1_0.5_160_quant.tflite]=3cc6d2ca460abd2e0f699a6d0d2550c6b61c6e3b0e27a3616e384ea74cb86f43
    [mobilenet_v1_0.25_128_quant.tflite]=cb273c23ee76374b05b9583177e28aa19744858a7679c56a250e83d0333da785
)
readonly MODEL_SOURCE_URL=https://github.com/google-coral/test_data/raw/master

source_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=""
dry_run=0
action=install
purge=0
start=1
model=$DEFAULT_MODEL
allow_unverified=0
mirror=${EDGE_INFER_MODEL_MIRROR:-$MODEL_SOURCE_URL}
changed=0  # set when a step changes the installed program, model or unit: the service is restarted
scratch=""  # a temporary directory, removed on exit

usage() {
    sed -n '2,13s/^# \{0,1\}//p' "$0"
    cat <<USAGE
Options: --root DIR, --dry-run, --uninstall, --purge, --no-start,
         --model NAME (default $DEFAULT_MODEL; one of: $(known_models)),
         --allow-unverified (install a --model NAME this script has no sha256 for, unchecked),
         --model-mirror DIR|URL (default \$EDGE_INFER_MODEL_MIRROR or $MODEL_SOURCE_URL)
USAGE
}

# Refused before anything is done: what was asked for is wrong (exit 2).
die() { echo "deploy.sh: error: $*" >&2; exit 2; }
# A step failed: the install stops there and never reports itself installed (exit 1).
fail() { echo "deploy.sh: error: $*" >&2; exit 1; }
say() { echo "deploy.sh: $*"; }
warn() { echo "deploy.sh: $*" >&2; }
# Reports a change; a dry run made none, so it says what it would do instead: did "install X" "installed X".
did() { if [ "$dry_run" = 1 ]; then say "would $1"; else say "$2"; fi; }

# Every change goes through here, so --dry-run shows it instead of doing it.
run() {
    if [ "$dry_run" = 1 ]; then
        echo "+ $*"
    else
        "$@"
    fi
}

# run, and stop with one line naming the step if it fails. Every step goes through this (or checks
# its own status): set -e does not apply inside a function called from `if` or `||`, so without it a
# failure could go unnoticed and be reported as installed.
step() {
    local what=$1
    shift
    run "$@" || fail "$what failed; fix what the line above says, then run deploy.sh again"
}

known_models() { printf '%s\n' "${!MODEL_SHA256[@]}" | LC_ALL=C sort | paste -sd' '; }

# The name becomes a file name under the models directory, part of a download URL and a line of the
# config: only a plain file name is accepted (no '/', no '..', no spaces, quotes, '$' or newlines), so
# nothing in it can be read as a path, a pattern or a command. It is printed with %q so that even a
# refused one stays on one line.
check_model() {
    if ! [[ $model =~ ^[A-Za-z0-9._-]+$ ]] || [[ $model == .* ]]; then
        die "--model $(printf %q "$model") is not a plain model file name (letters, digits, '.', '_' and '-', not starting with '.'), such as $DEFAULT_MODEL"
    fi
    if [ -z "${MODEL_SHA256[$model]+known}" ]; then
        if [ "$allow_unverified" = 0 ]; then
            die "--model $model is not a model this installer can verify (it knows $(known_models)); pick one of those, or add --allow-unverified to install it unchecked"
        fi
        warn "WARNING: $model is NOT VERIFIED: this installer has no sha256 for it, so whatever $mirror serves under that name is installed and run as it is (--allow-unverified)"
    fi
}

while [ $# -gt 0 ]; do
    case $1 in
        --root) [ $# -ge 2 ] || die "--root needs a directory"; root=$(realpath -m "$2"); shift ;;
        --dry-run) dry_run=1 ;;
        --uninstall) action=uninstall ;;
        --purge) purge=1 ;;
        --no-start) start=0 ;;
        --model) [ $# -ge 2 ] || die "--model needs a file name"; model=$2; shift ;;
        --allow-unverified) allow_unverified=1 ;;
        --model-mirror) [ $# -ge 2 ] || die "--model-mirror needs a directory or URL"; mirror=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done
[ "$purge" = 0 ] || [ "$action" = uninstall ] || die "--purge goes with --uninstall"
if [ "$action" = install ]; then check_model; fi

readonly opt_dir=$root/opt/edge-infer
readonly venv=$opt_dir/venv
readonly etc_dir=$root/etc/edge-infer
readonly state_dir=$root/var/lib/edge-infer
readonly models_dir=$state_dir/models
readonly unit_path=$root/etc/systemd/system/$SERVICE.service

on_system() { [ -z "$root" ]; }

systemctl_() {
    if on_system; then run systemctl "$@"; else run systemctl --root="$root" "$@"; fi
}

# Copy $1 to $2 with mode $3 unless $2 already has that content; $4 names it in an error. With $5, the
# file belongs to root and group $5 on the system (under --root ownership is left as it is, as for
# every file there: the group need not exist). Returns 1 when there was nothing to do.
install_file() {
    local from=$1 to=$2 mode=$3 what=$4 group=${5:-}
    if [ -f "$to" ] && cmp -s "$from" "$to"; then
        return 1
    fi
    local owner=()
    if [ -n "$group" ] && on_system; then owner=(-o root -g "$group"); fi
    # -T: a directory where the file goes is an error, not a place to copy into.
    step "installing the $what at $to" install -D -T -m "$mode" "${owner[@]}" "$from" "$to"
    did "install $to" "installed $to"
    changed=1
}

install_apt_packages() {
    if ! on_system; then
        say "--root: not installing apt packages"
        return
    fi
    command -v apt-get >/dev/null || die "this installer needs apt (Raspberry Pi OS or Debian)"
    local packages=(python3 python3-venv python3-pip ca-certificates curl)
    local updated=0
    # apt-cache knows only what the last `apt-get update` fetched (a fresh image may have no package lists
    # at all), so a package it does not show is not missing until the lists are new. Plain Debian has no
    # python3-picamera2: deploy.sh records its own update (apt keeps no such record: its http method stamps a list
    # file with the server's Last-Modified, methods/basehttp.cc utimes(DestFile, Server->Date)), and a re-deploy
    # within a day does not fetch the lists again to find that out.
    local stamp=$opt_dir/apt-lists-fetched
    if ! apt-cache show python3-picamera2 >/dev/null 2>&1 && [ -z "$(find "$stamp" -mmin -1440 2>/dev/null)" ]; then
        step "apt-get update" apt-get update
        updated=1
    fi
    # Picamera2 comes from apt only; it exists on Raspberry Pi OS, not on plain Debian.
    if apt-cache show python3-picamera2 >/dev/null 2>&1; then
        packages+=(python3-picamera2)
    else
        say "python3-picamera2 is not available from apt here: Pi camera support stays off (USB cameras work)"
    fi
    # The AI Camera (IMX500): its sensor firmware, its networks (/usr/share/imx500-models) and picamera2's imports
    # for it come with imx500-all, on Raspberry Pi OS only; installed where an AI Camera is attached (the imx500
    # driver is bound to a sensor: its I2C client, named bus-address, at 0x1a as the imx500 overlay sets it,
    # raspberrypi/linux arch/arm/boot/dts/overlays/imx500-overlay.dts) or the config runs a network on one.
    local imx500_driver=${EDGE_INFER_IMX500_DRIVER:-/sys/bus/i2c/drivers/imx500}
    if compgen -G "$imx500_driver/*-001a" >/dev/null \
        || grep -Eqs '^[[:space:]]*delegate:[[:space:]]*imx500' /etc/edge-infer/config.yaml; then
        if apt-cache show imx500-all >/dev/null 2>&1; then
            packages+=(imx500-all)
        else
            say "imx500-all is not available from apt here: the AI Camera runs as a plain camera"
        fi
    fi
    local missing=()
    local package
    for package in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$updated" = 0 ]; then step "apt-get update" apt-get update; updated=1; fi
        step "apt-get install ${missing[*]}" \
            env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    fi
    if [ "$updated" = 1 ]; then
        step "recording the update in $stamp" mkdir -p "$opt_dir"
        step "recording the update in $stamp" touch "$stamp"
    fi
}

create_user() {
    if ! on_system; then
        say "--root: not creating the system user $SERVICE_USER"
        return
    fi
    if ! id "$SERVICE_USER" >/dev/null 2>&1; then
        step "creating the system user $SERVICE_USER" \
            useradd --system --user-group --home-dir /var/lib/edge-infer --shell /usr/sbin/nologin "$SERVICE_USER"
    fi
    # video: the cameras. plugdev: the USB Coral (libedgetpu's udev rule gives it that group). apex: the
    # PCIe/M.2 Coral's /dev/apex_0 (the gasket driver's udev rule). The unit adds video and plugdev too.
    local group
    for group in video plugdev apex; do
        if getent group "$group" >/dev/null && ! id -nG "$SERVICE_USER" 2>/dev/null | grep -qw "$group"; then
            step "adding $SERVICE_USER to the group $group" usermod -a -G "$group" "$SERVICE_USER"
        fi
    done
}

# LiteRT and OpenCV publish wheels for 64-bit ARM and x86 only. Ask dpkg, not uname -m: a 32-bit
# Raspberry Pi OS runs a 64-bit kernel (uname says aarch64) under a 32-bit (armhf) userland.
check_architecture() {
    local arch
    arch=$(dpkg --print-architecture 2>/dev/null || echo unknown)
    case $arch in
        arm64|amd64) ;;
        *) die "this system's userland is $arch; edge-infer needs 64-bit Raspberry Pi OS or Debian (arm64) or amd64, since LiteRT and OpenCV have no $arch wheels. Install the 64-bit Raspberry Pi OS." ;;
    esac
}

# On a system whose apt numpy is 1.x (Bookworm: 1.24), pip must keep it: the venv sees apt's packages
# (--system-site-packages) and those built against numpy 1 (python3-picamera2's simplejpeg) break under
# numpy 2 ("numpy.dtype size changed": raspberrypi/picamera2#1088). The constraint makes pip choose
# versions that work with it (opencv-python-headless 4.11). Prints the constraints file's path, or nothing.
numpy_constraint() {
    local apt_numpy
    # The system's interpreter, outside the venv: it sees apt's numpy, not one pip put in the venv earlier.
    apt_numpy=$(python3 -s -c 'import numpy, sys; sys.stdout.write(numpy.__version__)' 2>/dev/null) || return 0
    case $apt_numpy in
        1.*)
            printf 'numpy==%s\n' "$apt_numpy" > "$opt_dir/constraints.txt" || return 1
            echo "$opt_dir/constraints.txt" ;;
        *) rm -f "$opt_dir/constraints.txt" ;;
    esac
}

# A hash of everything the install takes from the checkout: every file of the package (pip installs
# its data too, such as the live page's HTML, CSS and JavaScript, not only the *.py), its metadata, the
# README, the unit and the config. Byte code is left out: Python writes it on its own, in a checkout
# too. Sorted bytewise with NUL-separated names, so the hash depends on the files and nothing else.
source_fingerprint() {
    cd "$source_dir" &&
        { find edge_infer -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 &&
            printf '%s\0' pyproject.toml README.md "systemd/$SERVICE.service" config.yaml; } |
        LC_ALL=C sort -z | xargs -0 sha256sum -- | sha256sum | cut -d' ' -f1
}

install_venv() {
    # --system-site-packages: the apt-installed picamera2 and libcamera must be visible in the venv.
    if [ ! -x "$venv/bin/python" ]; then
        step "creating the venv $venv" python3 -m venv --system-site-packages "$venv"
    fi
    local stamp=$opt_dir/installed-from
    local version
    version=$(source_fingerprint) || fail "reading the files to install in $source_dir failed; is the checkout complete?"
    local constraints=() pinned=""
    if [ "$dry_run" = 0 ]; then
        local file
        file=$(numpy_constraint) || fail "writing $opt_dir/constraints.txt (apt's numpy, for pip) failed"
        if [ -n "$file" ]; then
            constraints=(--constraint "$file")
            pinned=$(cat "$file")
            say "keeping apt's $pinned in the venv (packages from apt are built against it)"
        fi
    fi
    version="$version $pinned"  # a new apt numpy means a new install
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version" ]; then
        return
    fi
    step "pip install of edge-infer into $venv" \
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${constraints[@]}" "$source_dir"
    step "installing the README at $opt_dir/README.md" install -T -m 0644 "$source_dir/README.md" "$opt_dir/README.md"
    # The stamp comes last: after a failure above, the next run installs again.
    if [ "$dry_run" = 0 ]; then
        echo "$version" > "$stamp" || fail "writing the install stamp $stamp failed"
    fi
    did "install edge-infer into $venv" "installed edge-infer into $venv"
    changed=1
}

# The shipped config.yaml as the service runs it: outputs to MQTT (every frame as JSON on stdout would
# flood the journal) and the model this script installs. awk compares whole lines as strings and gets
# the name through ENVIRON (-v would interpret backslashes), so no character of it is ever a pattern
# or a command: the line is written as it is.
service_config() {
    DEFAULT_PATH=${DEFAULT_MODEL%.tflite} MODEL_PATH=${model%.tflite} awk '
        $0 == "outputs: [stdout]" { print "outputs: [mqtt]"; next }
        $0 == ("  path: " ENVIRON["DEFAULT_PATH"]) { print "  path: " ENVIRON["MODEL_PATH"]; next }
        { print }' "$source_dir/config.yaml"
}

# The config may hold a broker password, or say where one is: root and the service's group read it,
# nobody else. An existing one is the admin's and is kept, but what others may do with it (or what its
# group may do beyond reading) is taken away; nothing is ever granted. One line says so.
tighten_config() {
    local target=$1 perms group loose=0
    { perms=$(stat -c %a "$target") && group=$(stat -c %G "$target"); } || fail "reading the mode of $target failed"
    if (( 8#$perms & 8#027 )); then loose=1; fi  # its group may write, or others may do anything
    # On the system its group must be the service's: the service reads it, and no other group does.
    if on_system && [ "$group" != "$SERVICE_USER" ] && (( 8#$perms & 8#070 )); then loose=1; fi
    [ "$loose" = 1 ] || return 0
    if on_system; then step "giving $target to the group $SERVICE_USER" chgrp "$SERVICE_USER" "$target"; fi
    step "taking others' access to $target" chmod g-wx,o-rwx "$target"
    local now why="it may hold a password: only root and the group $SERVICE_USER may read it"
    now=$(printf '%04o' $(( 8#$perms & ~8#037 )))
    did "restrict $target from mode $perms to $now ($why)" "restricted $target from mode $perms to $now ($why)"
}

install_config() {
    local shipped=$scratch/config.yaml target=$etc_dir/config.yaml
    service_config > "$shipped" || fail "writing the service's config from $source_dir/config.yaml failed"
    if [ ! -f "$target" ]; then
        install_file "$shipped" "$target" 0640 config "$SERVICE_USER" || true
        return
    fi
    tighten_config "$target"
    if ! cmp -s "$shipped" "$target"; then
        # Never overwrite a user's config; leave the new default beside it to compare.
        if install_file "$shipped" "$target.dist" 0640 "shipped config" "$SERVICE_USER"; then
            did "keep your $target; the shipped defaults would go to $target.dist" \
                "kept your $target; the shipped defaults are in $target.dist"
        fi
    fi
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

fetch_model() {
    local target=$models_dir/$model
    local expected=${MODEL_SHA256[$model]:-}
    if [ -f "$target" ] && { [ -z "$expected" ] || [ "$(sha256_of "$target")" = "$expected" ]; }; then
        return
    fi
    step "creating $models_dir" mkdir -p "$models_dir"
    if [ "$dry_run" = 1 ]; then
        echo "+ fetch $mirror/$model -> $target (sha256 ${expected:-unknown: NOT VERIFIED})"
        return
    fi
    # Download beside the target and rename: a crash leaves no half file under the final name.
    local partial
    partial=$(mktemp "$models_dir/.$model.XXXXXX") || fail "creating a file in $models_dir failed"
    if [ -d "$mirror" ]; then
        cp -- "$mirror/$model" "$partial" || { rm -f "$partial"; die "no $model in $mirror"; }
    else
        curl -fsSL --retry 3 -o "$partial" -- "$mirror/$model" ||
            { rm -f "$partial"; die "cannot download $mirror/$model (no internet? use --model-mirror DIR)"; }
    fi
    if [ -n "$expected" ] && [ "$(sha256_of "$partial")" != "$expected" ]; then
        rm -f "$partial"
        die "$model from $mirror does not have the expected sha256 $expected; deleted it"
    fi
    { chmod 0644 "$partial" && mv -T "$partial" "$target"; } ||
        { rm -f "$partial"; fail "putting the model in place at $target failed"; }
    if [ -n "$expected" ]; then
        say "fetched $target"
    else
        warn "fetched $target: NOT VERIFIED (no sha256 known for it; --allow-unverified)"
    fi
    changed=1
}

install_unit() {
    local unit_changed=0
    if install_file "$source_dir/systemd/$SERVICE.service" "$unit_path" 0644 unit; then
        unit_changed=1
    fi
    if on_system; then
        if [ "$unit_changed" = 1 ]; then step "systemctl daemon-reload" systemctl daemon-reload; fi
        if ! systemctl is-enabled --quiet "$SERVICE" 2>/dev/null; then
            systemctl_ enable "$SERVICE.service" || fail "enabling the unit $SERVICE.service failed"
        fi
        if [ "$start" = 1 ]; then
            if [ "$changed" = 1 ] || ! systemctl is-active --quiet "$SERVICE"; then
                step "starting $SERVICE.service (journalctl -u $SERVICE -e says why)" systemctl restart "$SERVICE.service"
            fi
        fi
    elif [ ! -L "$root/etc/systemd/system/multi-user.target.wants/$SERVICE.service" ]; then
        systemctl_ enable "$SERVICE.service" || fail "enabling the unit $SERVICE.service under $root failed"
    fi
}

print_next_steps() {
    if [ "$dry_run" = 1 ]; then
        say "dry run: nothing was changed"
        return
    fi
    cat <<EOF

edge-infer is installed.
  config:   /etc/edge-infer/config.yaml   (set mqtt.host to your broker, then: sudo systemctl restart $SERVICE)
  models:   /var/lib/edge-infer/models
  logs:     journalctl -u $SERVICE -f
  results:  mosquitto_sub -h <broker> -t 'edge-infer/#' -v
  status:   systemctl status $SERVICE
EOF
}

do_install() {
    if on_system && [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ]; then
        die "run as root (sudo ./deploy.sh), or use --root DIR or --dry-run"
    fi
    check_architecture
    scratch=$(mktemp -d) || fail "creating a temporary directory failed (is /tmp full?)"
    trap 'rm -rf "$scratch"' EXIT
    install_apt_packages
    create_user
    step "creating the directories $opt_dir, $etc_dir and $models_dir" mkdir -p "$opt_dir" "$etc_dir" "$models_dir"
    install_venv
    install_config
    fetch_model
    install_unit
    print_next_steps
}

do_uninstall() {
    if on_system && [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ]; then
        die "run as root (sudo ./deploy.sh --uninstall), or use --root DIR or --dry-run"
    fi
    if [ -f "$unit_path" ]; then
        if on_system; then
            run systemctl disable --now "$SERVICE.service" || true
        else
            systemctl_ disable "$SERVICE.service" || fail "disabling the unit $SERVICE.service under $root failed"
        fi
        step "removing $unit_path" rm -f "$unit_path"
        if on_system; then step "systemctl daemon-reload" systemctl daemon-reload; fi
    fi
    if [ -d "$opt_dir" ]; then step "removing $opt_dir" rm -rf "$opt_dir"; fi
    if [ "$purge" = 1 ]; then
        if [ -d "$etc_dir" ]; then step "removing $etc_dir" rm -rf "$etc_dir"; fi
        if [ -d "$state_dir" ]; then step "removing $state_dir" rm -rf "$state_dir"; fi
        if on_system && id "$SERVICE_USER" >/dev/null 2>&1; then
            step "removing the user $SERVICE_USER" userdel "$SERVICE_USER"
        fi
    fi
    if [ "$dry_run" = 1 ]; then
        say "dry run: nothing was changed"
    elif [ "$purge" = 1 ]; then
        say "removed edge-infer, its configuration and models"
    else
        say "removed edge-infer; kept $etc_dir and $models_dir (--purge removes them)"
    fi
}

if [ "$action" = install ]; then do_install; else do_uninstall; fi
