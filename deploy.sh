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
mirror=${EDGE_INFER_MODEL_MIRROR:-$MODEL_SOURCE_URL}
changed=0  # set when a step changes the installed program, model or unit: the service is restarted

usage() {
    sed -n '2,13s/^# \{0,1\}//p' "$0"
    cat <<EOF
Options: --root DIR, --dry-run, --uninstall, --purge, --no-start,
         --model NAME (default $DEFAULT_MODEL), --model-mirror DIR|URL (default \$EDGE_INFER_MODEL_MIRROR
         or $MODEL_SOURCE_URL)
EOF
}

die() { echo "deploy.sh: error: $*" >&2; exit 2; }
say() { echo "deploy.sh: $*"; }

# Every change goes through here, so --dry-run shows it instead of doing it.
run() {
    if [ "$dry_run" = 1 ]; then
        echo "+ $*"
    else
        "$@"
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
        --model-mirror) [ $# -ge 2 ] || die "--model-mirror needs a directory or URL"; mirror=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done
[ "$purge" = 0 ] || [ "$action" = uninstall ] || die "--purge goes with --uninstall"

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

# Copy $1 to $2 with mode $3 unless $2 already has the same content. Prints whether it changed.
install_file() {
    local from=$1 to=$2 mode=$3
    if [ -f "$to" ] && cmp -s "$from" "$to"; then
        return 1
    fi
    run install -D -m "$mode" "$from" "$to"
    say "installed $to"
    changed=1
}

install_apt_packages() {
    if ! on_system; then
        say "--root: not installing apt packages"
        return
    fi
    command -v apt-get >/dev/null || die "this installer needs apt (Raspberry Pi OS or Debian)"
    local packages=(python3 python3-venv python3-pip ca-certificates curl)
    # Picamera2 comes from apt only; it exists on Raspberry Pi OS, not on plain Debian.
    if apt-cache show python3-picamera2 >/dev/null 2>&1; then
        packages+=(python3-picamera2)
    else
        say "python3-picamera2 is not available from apt here: Pi camera support stays off (USB cameras work)"
    fi
    local missing=()
    local package
    for package in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        run apt-get update
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    fi
}

create_user() {
    if ! on_system; then
        say "--root: not creating the system user $SERVICE_USER"
        return
    fi
    if ! id "$SERVICE_USER" >/dev/null 2>&1; then
        run useradd --system --user-group --home-dir /var/lib/edge-infer --shell /usr/sbin/nologin "$SERVICE_USER"
    fi
    # video: the cameras. plugdev: the USB Coral (libedgetpu's udev rule gives it that group). apex: the
    # PCIe/M.2 Coral's /dev/apex_0 (the gasket driver's udev rule). The unit adds video and plugdev too.
    local group
    for group in video plugdev apex; do
        if getent group "$group" >/dev/null && ! id -nG "$SERVICE_USER" 2>/dev/null | grep -qw "$group"; then
            run usermod -a -G "$group" "$SERVICE_USER"
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
            printf 'numpy==%s\n' "$apt_numpy" > "$opt_dir/constraints.txt"
            echo "$opt_dir/constraints.txt" ;;
        *) rm -f "$opt_dir/constraints.txt" ;;
    esac
}

install_venv() {
    # --system-site-packages: the apt-installed picamera2 and libcamera must be visible in the venv.
    if [ ! -x "$venv/bin/python" ]; then
        run python3 -m venv --system-site-packages "$venv"
    fi
    local stamp=$opt_dir/installed-from
    local version
    version=$(cd "$source_dir" && find edge_infer pyproject.toml -type f -name '*.py' -o -name pyproject.toml |
        LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
    local constraints=() pinned=""
    if [ "$dry_run" = 0 ]; then
        local file
        file=$(numpy_constraint)
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
    run "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${constraints[@]}" "$source_dir"
    run install -m 0644 "$source_dir/README.md" "$opt_dir/README.md"
    if [ "$dry_run" = 0 ]; then echo "$version" > "$stamp"; fi
    say "installed edge-infer into $venv"
    changed=1
}

install_config() {
    # The service publishes to MQTT; every frame as JSON on stdout would flood the journal.
    local shipped
    shipped=$(mktemp)
    # ... and it runs the model this script installs.
    sed -e 's/^outputs: \[stdout\]$/outputs: [mqtt]/' \
        -e "s/^  path: ${DEFAULT_MODEL%.tflite}$/  path: ${model%.tflite}/" "$source_dir/config.yaml" > "$shipped"
    local target=$etc_dir/config.yaml
    if [ ! -f "$target" ]; then
        install_file "$shipped" "$target" 0644 || true
    elif ! cmp -s "$shipped" "$target"; then
        # Never overwrite a user's config; leave the new default beside it to compare.
        if install_file "$shipped" "$target.dist" 0644; then
            say "kept your $target; the shipped defaults are in $target.dist"
        fi
    fi
    rm -f "$shipped"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

fetch_model() {
    local target=$models_dir/$model
    local expected=${MODEL_SHA256[$model]:-}
    if [ -f "$target" ] && { [ -z "$expected" ] || [ "$(sha256_of "$target")" = "$expected" ]; }; then
        return
    fi
    run mkdir -p "$models_dir"
    if [ "$dry_run" = 1 ]; then
        echo "+ fetch $mirror/$model -> $target (sha256 ${expected:-unknown})"
        return
    fi
    # Download beside the target and rename: a crash leaves no half file under the final name.
    local partial
    partial=$(mktemp "$models_dir/.$model.XXXXXX")
    if [ -d "$mirror" ]; then
        cp "$mirror/$model" "$partial" || { rm -f "$partial"; die "no $model in $mirror"; }
    else
        curl -fsSL --retry 3 -o "$partial" "$mirror/$model" ||
            { rm -f "$partial"; die "cannot download $mirror/$model (no internet? use --model-mirror DIR)"; }
    fi
    if [ -n "$expected" ] && [ "$(sha256_of "$partial")" != "$expected" ]; then
        rm -f "$partial"
        die "$model from $mirror does not have the expected sha256 $expected; deleted it"
    fi
    chmod 0644 "$partial"
    mv "$partial" "$target"
    say "fetched $target"
    changed=1
}

install_unit() {
    local unit_changed=0
    if install_file "$source_dir/systemd/$SERVICE.service" "$unit_path" 0644; then
        unit_changed=1
    fi
    if on_system; then
        if [ "$unit_changed" = 1 ]; then run systemctl daemon-reload; fi
        if ! systemctl is-enabled --quiet "$SERVICE" 2>/dev/null; then systemctl_ enable "$SERVICE.service"; fi
        if [ "$start" = 1 ]; then
            if [ "$changed" = 1 ] || ! systemctl is-active --quiet "$SERVICE"; then
                run systemctl restart "$SERVICE.service"
            fi
        fi
    elif [ ! -L "$root/etc/systemd/system/multi-user.target.wants/$SERVICE.service" ]; then
        systemctl_ enable "$SERVICE.service"
    fi
}

print_next_steps() {
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
    install_apt_packages
    create_user
    run mkdir -p "$opt_dir" "$etc_dir" "$models_dir"
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
        if on_system; then run systemctl disable --now "$SERVICE.service" || true; else systemctl_ disable "$SERVICE.service"; fi
        run rm -f "$unit_path"
        if on_system; then run systemctl daemon-reload; fi
    fi
    if [ -d "$opt_dir" ]; then run rm -rf "$opt_dir"; fi
    if [ "$purge" = 1 ]; then
        if [ -d "$etc_dir" ]; then run rm -rf "$etc_dir"; fi
        if [ -d "$state_dir" ]; then run rm -rf "$state_dir"; fi
        if on_system && id "$SERVICE_USER" >/dev/null 2>&1; then run userdel "$SERVICE_USER"; fi
        say "removed edge-infer, its configuration and models"
    else
        say "removed edge-infer; kept $etc_dir and $models_dir (--purge removes them)"
    fi
}

if [ "$action" = install ]; then do_install; else do_uninstall; fi
