#!/usr/bin/env bash
# An mmdebstrap customize hook (tests/system/run.sh): builds the kernel's vimc driver, libcamera's virtual test
# camera, for the image's own kernel, and installs it where modprobe finds it. Debian's arm64 kernel is built
# without CONFIG_VIDEO_VIMC; everything vimc selects is there as a module or built in (V4L2_TPG, VIDEOBUF2_VMALLOC,
# MEDIA_CONTROLLER, VIDEO_V4L2_SUBDEV_API), and the kernel does not force module signatures (MODULE_SIG_FORCE unset),
# so an unsigned vimc.ko loads (tainting the kernel) on a machine booted without Secure Boot, as qemu's is.
#
#   build-vimc.sh ROOTFS MIRROR WORKDIR
# Its sources come from the linux-source package of the same version as the image's headers, downloaded here;
# the build runs in the image (under qemu-user), with its gcc and its headers.
set -euo pipefail
rootfs=$1 mirror=$2 work=$3

kernel=$(ls "$rootfs/lib/modules")
version=$(dpkg-query --admindir="$rootfs/var/lib/dpkg" -W -f='${Version}' "linux-headers-$kernel")
series=${kernel%%.*}.$(cut -d. -f2 <<<"$kernel")  # 6.12.117+deb13-arm64 -> 6.12
source_deb=$work/linux-source.deb
curl -fsSL -o "$source_deb" "$mirror/pool/main/l/linux/linux-source-${series}_${version}_all.deb"
mkdir -p "$rootfs/usr/src/vimc"
dpkg-deb --fsys-tarfile "$source_deb" | tar -xO "./usr/src/linux-source-$series.tar.xz" |
    tar -xJ -C "$rootfs/usr/src/vimc" --strip-components=5 "linux-source-$series/drivers/media/test-drivers/vimc"
rm -f "$source_deb"
# The tree's own Makefile, with the symbol set: vimc-y lists the objects of this kernel's vimc.
chroot "$rootfs" make -s -C "/usr/src/linux-headers-$kernel" M=/usr/src/vimc CONFIG_VIDEO_VIMC=m modules
# Not modules_install: with MODULE_SIG_ALL it would sign with a key that is not here.
install -D -m 0644 "$rootfs/usr/src/vimc/vimc.ko" "$rootfs/lib/modules/$kernel/updates/vimc.ko"
chroot "$rootfs" depmod "$kernel"
echo "vimc.ko built for $kernel"
