"""Writes and reads IMX500 network files (.rpk) in the layout upstream reads them (picamera2 at 3e6dff0,
picamera2/devices/imx500/imx500.py:823-864, __ni_from_network; raspberrypi/linux drivers/media/i2c/imx500.c,
imx500_validate_fw_block and imx500_iterate_nw_regs):

- firmware blocks, each: a 32-byte header (b'9464', the big-endian size of header + body, 8 flag bytes whose
  byte 6 bit 0 is the device-lock flag, 16 reserved bytes), the body, a 64-byte footer ending in b'3695' (so the
  footer's magic is at size + 60 and the next block at size + 64);
- then a cpio archive in the "newc" format (which libarchive's fd_reader and the kernel's find_cpio_data read)
  with network_info.txt (key=value lines; a networkOrdinal=N line starts each network's section) and
  network_intrinsics (JSON).

The stand-in adds one entry of its own, standin_network: the path of a real TFLite classifier that the stand-in
sensor runs in place of the IMX500's DNN. network_info.txt's networkName line is the stand-in's too (upstream's
parser keeps only networkID, apParamSize and networkNum from the top section): it names the network in
CnnOutputTensorInfo, where the real sensor takes the name from the tensor's apParams.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HEADER_MAGIC = b"9464"
FOOTER_MAGIC = b"3695"
HEADER_SIZE = 32
FOOTER_SIZE = 64
NEWC_MAGIC = (b"070701", b"070702")
NEWC_HEADER_SIZE = 110
TRAILER = "TRAILER!!!"


def firmware_block(body: bytes, *, device_lock: bool = False, footer: bytes = FOOTER_MAGIC) -> bytes:
    size = HEADER_SIZE + len(body)
    flags = bytes([0] * 6 + [1 if device_lock else 0, 0])
    header = HEADER_MAGIC + struct.pack(">I", size) + flags + bytes(16)
    block = header + body + bytes(FOOTER_SIZE - len(footer)) + footer
    return block + (bytes(32) if device_lock else b"")  # picamera2 skips 32 bytes after a device-locked block


def newc_entry(name: str, data: bytes, ino: int, mode: int = 0o100644) -> bytes:
    """One cpio "newc" member: '070701', 13 fields as 8 hex digits, the NUL-terminated name, the data, each of
    the last two padded to 4 bytes (cpio(5), "New ASCII Format")."""
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
    out = NEWC_MAGIC[0] + b"".join(b"%08X" % value for value in fields) + encoded
    out += bytes(-len(out) % 4)
    return out + data + bytes(-len(data) % 4)


def newc_archive(entries: dict[str, bytes]) -> bytes:
    members = [newc_entry(name, data, ino) for ino, (name, data) in enumerate(entries.items(), start=1)]
    return b"".join(members) + newc_entry(TRAILER, b"", 0, mode=0)


def read_newc(data: bytes | memoryview) -> Iterator[tuple[str, bytes]]:
    """(name, content) for each member of a newc archive, up to its trailer: what the stand-in reads in place of
    libarchive's fd_reader."""
    data = bytes(data)
    pos = 0
    while True:
        if data[pos:pos + 6] not in NEWC_MAGIC:
            raise ValueError(f"not a newc cpio member at offset {pos}")
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        size, name_size = fields[6], fields[11]
        name_start = pos + NEWC_HEADER_SIZE
        name = data[name_start:name_start + name_size - 1].decode()
        data_start = name_start + name_size + (-(NEWC_HEADER_SIZE + name_size) % 4)
        if name == TRAILER:
            return
        yield name, data[data_start:data_start + size]
        pos = data_start + size + (-size % 4)


def valid_fw_bytes(fw: bytes) -> int:
    """The bytes of well-formed firmware blocks at the start of `fw`, as the kernel counts them before it uploads
    a network (imx500.c imx500_valid_fw_bytes; 0 when the first block's footer is wrong)."""
    total = 0
    while len(fw) - total >= HEADER_SIZE and fw[total:total + 4] == HEADER_MAGIC:
        (size,) = struct.unpack(">I", fw[total + 4:total + 8])
        end = total + size + FOOTER_SIZE
        if end > len(fw) or fw[end - 4:end] != FOOTER_MAGIC:
            break
        total = end
    return total


def cpio_entries(fw: bytes) -> dict[str, bytes]:
    """The cpio members after the firmware blocks, found as the kernel finds imx500_regs (find_cpio_data after
    imx500_valid_fw_bytes); empty when there is no archive there."""
    try:
        return dict(read_newc(fw[valid_fw_bytes(fw):]))
    except (ValueError, IndexError):
        return {}


def network_info(width: int, height: int, network_name: str) -> str:
    lines = [f"networkName={network_name}", "networkID=000001", "apParamSize=1024", "networkNum=1",
             "networkOrdinal=0", f"inputTensorWidth={width}", f"inputTensorHeight={height}", "inputTensorFormat=RGB",
             # uint8 RGB in, no offset, gain 1.0 (K00/K11/K22 are 0x0400 = 1024, the divisor upstream shifts by 6).
             "inputTensorNorm_K00=0x0400", "inputTensorNorm_K02=0x0000", "inputTensorNorm_K03=0x0000",
             "inputTensorNorm_K11=0x0400", "inputTensorNorm_K13=0x0000", "inputTensorNorm_K20=0x0000",
             "inputTensorNorm_K22=0x0400", "inputTensorNorm_K23=0x0000"]
    return "\n".join(lines) + "\n"  # no blank line: upstream splits every line on '='


def write_rpk(path: str | Path, *, network: str, width: int = 224, height: int = 224,
              intrinsics: dict[str, Any] | None = None, network_name: str = "mobilenet_v2",
              blocks: int = 2, block_size: int = 4096, device_lock: bool = False) -> Path:
    """Writes an IMX500 network file whose sensor runs the TFLite model at `network`; `intrinsics` is the
    network_intrinsics JSON (no entry when None). Returns the path."""
    fw = b"".join(firmware_block(bytes([i % 251 for i in range(block_size)]), device_lock=device_lock)
                  for _ in range(blocks))
    entries = {"network_info.txt": network_info(width, height, network_name).encode()}
    if intrinsics is not None:
        entries["network_intrinsics"] = json.dumps(intrinsics).encode()
    entries["standin_network"] = str(network).encode()
    path = Path(path)
    path.write_bytes(fw + newc_archive(entries))
    return path
