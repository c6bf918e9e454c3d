#!/usr/bin/env bash
# Inside the emulated Debian trixie arm64 guest, as root, started by edge-infer-system-test.service:
# install edge-infer with deploy.sh as a user would, and check the service under systemd on the vivid
# camera. Prints "ok: ..." / "FAILED: ..." per check and "N passed, N failed" on the console, leaves
# the service's journal on the third disk, and powers the guest off. Emulated inference is slow
# (MobileNet V1 0.25_128 takes ~0.1 s a frame here): the checks wait on behaviour, never on speed.
set -u

payload=/srv/payload
results=/srv/results
mkdir -p "$results"
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
bad() { failed=$((failed + 1)); echo "FAILED: $*"; }
check() {  # check NAME COMMAND...: the command's output goes to the results log; how long it took to the line
    local name=$1 started=$SECONDS
    shift
    echo "== $name" >>"$results/checks.log"
    if "$@" >>"$results/checks.log" 2>&1; then
        ok "$name ($((SECONDS - started)) s)"
    else
        bad "$name"
        echo "-- FAILED: $name" >>"$results/checks.log"
    fi
}
wait_until() {  # wait_until SECONDS COMMAND...
    local deadline=$(($(date +%s) + $1))
    shift
    until "$@"; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 2
    done
}
main_pid() { systemctl show -p MainPID --value edge-infer; }
journal_has() { journalctl -u edge-infer --no-pager -o cat | grep -q "$1"; }
warnings_only() {  # journald filed each line at the priority its <N> prefix gave: -p warning drops the info lines
    local warnings
    warnings=$(journalctl -u edge-infer --no-pager -o cat -p warning)
    grep -q "source lost:" <<<"$warnings" && ! grep -q "auto source: using" <<<"$warnings" &&
        ! grep -q "^edge-infer: " <<<"$warnings"
}
finish() {
    journalctl -u edge-infer --no-pager >"$results/journal.txt" 2>&1
    tar -cf /dev/vdc -C "$results" . 2>/dev/null
    echo "$passed passed, $failed failed"
    sync
    echo o >/proc/sysrq-trigger  # an immediate power-off: qemu ends at once
}
trap finish EXIT

export PIP_NO_INDEX=1 PIP_FIND_LINKS=$payload/wheels  # pip takes the wheels the host downloaded
model=mobilenet_v1_0.25_128_quant
deploy() { bash "$payload/src/deploy.sh" --model "$model.tflite" --model-mirror "$payload/models"; }

# The checks that take more than one command.
deploy_changes_nothing() {
    local out
    out=$(deploy) || return 1
    echo "$out"
    ! grep -E "^deploy.sh: (installed|fetched)" <<<"$out" &&
        ! grep -E "^(Hit|Get|Ign|Err):" <<<"$out"  # nor fetches apt's lists again (its stamp is from the first)
}
ready_after_first_frame() {  # READY=1 carries the status the first classified frame sets
    systemctl is-active --quiet edge-infer &&
        systemctl show -p StatusText --value edge-infer | grep -q "^classifying with $model on cpu"
}
a_message_on() {  # a_message_on TOPIC-LEVEL COUNT SECONDS PATTERN
    mosquitto_sub -h localhost -t "edge-infer/+/$1" -C "$2" -W "$3" | tee /dev/stderr | grep -q "$4"
}
retained_status_is() { [ "$(mosquitto_sub -h localhost -t "edge-infer/+/status" -C 1 -W 10)" = "$1" ]; }
exposure_at_most() {
    systemd-analyze security edge-infer | tee /dev/stderr |
        grep -oE "Overall exposure level for edge-infer.service: [0-9.]+" | awk -v limit="$1" '{exit !($NF <= limit)}'
}
restarted_since() {  # restarted_since PID SECONDS: active again, under another process
    local deadline=$((SECONDS + $2)) now
    while [ $SECONDS -lt $deadline ]; do
        now=$(main_pid)
        if systemctl is-active --quiet edge-infer && [ "$now" != "$1" ] && [ "$now" != 0 ]; then return 0; fi
        sleep 2
    done
    return 1
}
nothing_left() {
    local path
    ! id edge-infer 2>/dev/null || { echo "the user is left"; return 1; }
    ! systemctl cat edge-infer >/dev/null 2>&1 || { echo "the unit is left"; return 1; }
    for path in /opt/edge-infer /etc/edge-infer /var/lib/edge-infer /etc/systemd/system/edge-infer.service \
        /etc/systemd/system/multi-user.target.wants/edge-infer.service; do
        [ ! -e "$path" ] || { echo "left behind: $path"; return 1; }
    done
}

# A camera, as a user plugs one in: the kernel's virtual V4L2 camera.
check "modprobe vivid gives a V4L2 capture device" wait_until 30 bash -c 'modprobe vivid && [ -e /dev/video0 ]'

check "deploy.sh installs and starts the service" deploy
check "the service user exists, in the video group" bash -c 'id -nG edge-infer | grep -qw video'
pid=$(main_pid)
check "a second deploy.sh changes nothing" deploy_changes_nothing
check "... and leaves the service running as it was" test "$(main_pid)" = "$pid"

# The user's own settings: every result, and stats every 5 s.
sed -i -e 's/^  publish: change$/  publish: all/' -e 's/^  stats_interval: 30.0 .*$/  stats_interval: 5.0/' \
    /etc/edge-infer/config.yaml
check "the edited configuration passes --check-config" \
    /opt/edge-infer/venv/bin/edge-infer run --config /etc/edge-infer/config.yaml --check-config

# Type=notify: `systemctl start` returns once the model is loaded and the first frame classified.
systemctl stop edge-infer
check "systemctl start reaches active (running)" systemctl start edge-infer
pid=$(main_pid)
check "... only after the first classified frame" ready_after_first_frame
check "source: auto found the vivid camera" journal_has "auto source: using /dev/video"
check "classifications arrive on the guest's mosquitto" a_message_on classification 1 120 '"top"'
check "status is online, retained" retained_status_is online
check "systemd-analyze security: exposure at most 2.0" exposure_at_most 2.0

# The camera unplugged and plugged back mid-run: the service stays up, says so, and goes on. rmmod cannot
# remove vivid while the service holds /dev/video0 open; unbinding the driver (the driver core's sysfs
# "unbind"/"bind", Documentation/ABI/testing/sysfs-bus-platform) removes the device as an unplug does.
vivid=$(basename "$(readlink -f /sys/class/video4linux/video0/device)")
echo "$vivid" >/sys/bus/platform/drivers/vivid/unbind
check "an unplugged camera is reported as lost" wait_until 60 journal_has "source lost:"
check "... as a warning: journalctl -p warning shows it, and no info line" warnings_only
check "... the stats say reconnecting" a_message_on stats 3 30 '"state": "reconnecting"'
sleep 35  # longer than WatchdogSec: the watchdog is fed while the source reconnects
echo "$vivid" >/sys/bus/platform/drivers/vivid/bind
check "... it is back once plugged in" wait_until 120 journal_has " is back after "
check "... results resume" a_message_on classification 2 120 '"top"'
check "... without a restart" test "$(main_pid)" = "$pid"

# Crashes and hangs get the service restarted.
systemctl kill -s KILL edge-infer
check "SIGKILL leads to a restart" restarted_since "$pid" 180
pid=$(main_pid)
kill -STOP "$pid"
check "a frozen process (SIGSTOP) is killed by the watchdog and restarted" restarted_since "$pid" 240
check "... by the watchdog" journal_has "Watchdog timeout"

# Picamera2 for real: libcamera's virtual test camera (vimc, built for this kernel with the image), libcamera and
# its Python bindings from Debian, picamera2 0.3.36 from PyPI in the service's venv. Debian's kernel has no DMA heap
# and vimc offers one stream in a format of its own: the source takes libcamera's allocator and reads the main
# stream, converted to B, G, R.
venv=/opt/edge-infer/venv
install_picamera2() {
    local site
    "$venv/bin/pip" install --no-deps "$payload"/picamera2/*.whl || return 1
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') || return 1
    cp -r "$payload/src/tests/system/stubs/pykms" "$payload/src/tests/system/stubs/pidng" "$site/" &&
        "$venv/bin/python" -c 'from picamera2 import Picamera2; print(Picamera2.global_camera_info())' |
        tee /dev/stderr | grep -q "'Model': 'Sensor B'"
}
cat >/tmp/picamera2.yaml <<YAML
model: {path: /var/lib/edge-infer/models/$model.tflite}
source: {type: picamera2, width: 800, height: 600}
outputs: [stdout]
run: {max_frames: 4}
YAML
picamera2_from_the_cli() {  # as the service's user: four frames in order
    local status=0 out
    out=$(runuser -u edge-infer -- "$venv/bin/edge-infer" run --config /tmp/picamera2.yaml 2>/tmp/picamera2.log) ||
        status=$?
    cat /tmp/picamera2.log
    echo "$out"
    echo "exit status $status"
    dmesg | grep -a "vimc link validate" | tail -2  # vimc logs both ends of each link it validates (vimc-common.c)
    ! grep -q Traceback /tmp/picamera2.log &&
        grep -q "no DMA heap (/dev/dma_heap): frame buffers from libcamera's allocator instead" /tmp/picamera2.log &&
        grep -q "picamera2 camera 0 (Sensor B): 800x600 frames from its main stream" /tmp/picamera2.log &&
        [ "$status" = 0 ] && [ "$(grep -o '"frame":[0-9]*' <<<"$out" | cut -d: -f2 | tr '\n' ' ')" = "1 2 3 4 " ]
}
camera_released() { cam -c 1 --capture=2 >/dev/null 2>&1; }
journal_since() { journalctl -u edge-infer --no-pager -o cat --since "$1" | grep -q "$2"; }  # journal_since TIME TEXT
errors_since() { journalctl -u edge-infer --no-pager -o cat -p err --since "$1" | grep -q "$2"; }  # at err priority
same_or_said_why() {  # same_or_said_why PID TIME: the same process, or one restarted after its Python stacks were logged
    [ "$(main_pid)" = "$1" ] || journal_since "$2" "Fatal Python error: Aborted"
}
journal_shows() {  # journal_shows SECONDS TIME TEXT: waits for it; else prints the journal since then, and the kernel's
    wait_until "$1" journal_since "$2" "$3" && return 0
    journalctl -u edge-infer --no-pager --since "$2" | tail -40
    dmesg | tail -15
    return 1
}
frames_rise() {  # three classifications on MQTT, their frame numbers rising: the camera streams
    local frames
    frames=$(mosquitto_sub -h localhost -t "edge-infer/+/classification" -C 3 -W 120 |
        grep -oE '"frame": *[0-9]+' | grep -oE '[0-9]+$' | tr '\n' ' ')
    echo "frames: $frames"
    # shellcheck disable=SC2086  # three numbers, split on purpose
    set -- $frames
    [ $# = 3 ] && [ "$1" -lt "$2" ] && [ "$2" -lt "$3" ]
}
stopped_cleanly() {  # systemctl stop: SIGTERM, exit status 0, the camera free for the next user
    systemctl stop edge-infer &&
        [ "$(systemctl show -p ExecMainStatus --value edge-infer)" = 0 ] && camera_released
}
systemctl stop edge-infer
check "modprobe vimc: libcamera lists its camera" wait_until 60 bash -c 'modprobe vimc && cam -l | grep -q "Sensor B"'
check "... and cam captures from it" camera_released
check "picamera2 0.3.36 from PyPI imports in the service's venv and lists vimc" install_picamera2
check "picamera2: edge-infer run on vimc: libcamera's allocator, 800x600 as configured, frames 1-4" \
    picamera2_from_the_cli
check "... and the camera is free again" camera_released

# The service on the Pi camera path, with the user's config saying source: picamera2.
sed -i '/^source:$/,/^[a-z]/s/^  type: auto$/  type: picamera2/' /etc/edge-infer/config.yaml
since=$(date '+%Y-%m-%d %H:%M:%S')
check "picamera2: the service on source: picamera2 reaches active (running)" systemctl restart edge-infer
check "... classifies vimc's frames" frames_rise
check "... through Picamera2" journal_since "$since" "picamera2 camera 0 (Sensor B): 640x480 frames from its main stream"
check "... libcamera's own errors in the journal at their priority" \
    errors_since "$since" "ERROR DmaBufAllocator .*Could not open any dma-buf"
# Another program streaming from the camera: the service cannot have it (a Pi camera's acquire fails: "in use by
# another process"; vimc is not even listed then, as libcamera's vimc.cpp VimcCameraData::init changes its media
# links, which the kernel refuses while it streams: libcamera's error in the journal says "Device or resource busy"),
# ends with exit 4, and systemd retries until it is free.
systemctl stop edge-infer
cam -c 1 --capture >/tmp/cam.log 2>&1 </dev/null &
holder=$!
sleep 3
kill -0 "$holder" || { echo "cam is not running:"; cat /tmp/cam.log; }
since=$(date '+%Y-%m-%d %H:%M:%S')
systemctl start --no-block edge-infer
check "picamera2: a camera another program streams from is reported as busy" \
    journal_shows 120 "$since" "camera in use by another process\|Device or resource busy"
kill "$holder"
wait "$holder" 2>/dev/null
check "... and the service starts once it is free" wait_until 120 systemctl is-active --quiet edge-infer
check "... and classifies" frames_rise
# vimc unplugged and plugged back (its platform driver's unbind and bind, as vivid's above). Picamera2's stop of the
# vanished camera aborts in libcamera 0.4 (pipeline_handler.cpp: assertion "data->queuedRequests_.empty()" failed in
# stop(): the gone device never returns its requests): systemd restarts the service, which waits (exit 4, restarted
# every 10 s) until the camera is back; the journal has libcamera's last line and the aborted process's Python stacks.
pid=$(main_pid)
vimc=$(basename "$(readlink -f /sys/bus/platform/drivers/vimc/vimc.*)")
since=$(date '+%Y-%m-%d %H:%M:%S')
echo "$vimc" >/sys/bus/platform/drivers/vimc/unbind
check "picamera2: vimc unplugged mid-run is reported as lost" journal_shows 60 "$since" "source lost:"
sleep 15
echo "$vimc" >/sys/bus/platform/drivers/vimc/bind
check "... plugged back: the service classifies again" wait_until 180 frames_rise
check "... in the same process, or one restarted with the aborted one's Python stacks in the journal" \
    same_or_said_why "$pid" "$since"
check "picamera2: systemctl stop exits 0 and frees the camera" stopped_cleanly

check "deploy.sh --uninstall --purge" bash "$payload/src/deploy.sh" --uninstall --purge
check "... leaves nothing behind" nothing_left
