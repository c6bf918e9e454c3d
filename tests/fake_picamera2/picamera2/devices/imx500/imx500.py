"""Stands in for picamera2/devices/imx500/imx500.py (picamera2 at 3e6dff0) on a machine without the AI Camera.

The code is upstream's where it only computes (NetworkIntrinsics, the rpk parsing, get_outputs, the ROI maths);
what upstream asks the kernel goes to the stand-in's Imx500Driver (picamera2/__init__.py) instead:
- the sensor is found among $FAKE_PICAMERA2's cameras whose Model is "imx500", in place of the
  /sys/class/video4linux/v4l-subdev*/device links upstream reads (:312-335);
- the debugfs progress files upstream reads with `cat` or the sudo scripts (:373-387) come from the driver, and
  are readable as $FAKE_PICAMERA2's imx500.fw_progress says (else subprocess.CalledProcessError, as `cat` fails);
- the ioctls (network firmware fd :805-821, ROI :687-716) set the driver's state;
- libarchive's fd_reader is imx500_rpk.read_newc; jsonschema.validate is `validate` below (the schema's
  keywords only), raising ValidationError, an Exception as jsonschema's is (not a ValueError);
- show_network_fw_progress_bar runs its tqdm loop in a thread (upstream: a process reading debugfs, which a
  forked stand-in could not see change).
Not here: tensor injection (OpenEXR, Imath), get_device_id, get_injection_cmp_frm, input_tensor_image,
get_roi_scaled, convert_inference_coords.

The parts kept as upstream wrote them (NetworkIntrinsics, the network_info.txt parsing) are picamera2's, under its
BSD 2-Clause License: Copyright (c) 2021, Raspberry Pi. All rights reserved. Redistribution and use in source and
binary forms, with or without modification, are permitted provided that the following conditions are met:
redistributions of source code must retain the above copyright notice, this list of conditions and the following
disclaimer; redistributions in binary form must reproduce the above copyright notice, this list of conditions and the
following disclaimer in the documentation and/or other materials provided with the distribution. THIS SOFTWARE IS
PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT
LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT
SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR
CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA,
OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT
LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF
ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
"""

from __future__ import annotations

import ctypes
import importlib
import io
import json
import os
import re
import struct
import subprocess
import threading
import time
from enum import IntEnum
from typing import Any

import imx500_rpk
import numpy as np
from libcamera import Rectangle, Size

from picamera2 import settings


def standin():
    """The picamera2 stand-in as imported now: tests re-import it for new settings, and a cached
    picamera2.devices must still reach the new one's drivers."""
    return importlib.import_module("picamera2")

_import_error = settings().get("imx500", {}).get("import_error")
if _import_error:  # upstream imports Imath, jsonschema, OpenEXR, libarchive and videodev2 here (:13-28)
    _missing = re.search(r"'([^']+)'", _import_error)
    raise ModuleNotFoundError(_import_error, name=_missing.group(1) if _missing else None)

NETWORK_NAME_LEN = 64
MAX_NUM_TENSORS = 16
MAX_NUM_DIMENSIONS = 16

FW_LOADER_STAGE = 0
FW_MAIN_STAGE = 1
FW_NETWORK_STAGE = 2


# struct OutputTensorInfo from libcamera (:48-54)
class OutputTensorInfo(ctypes.LittleEndianStructure):
    _fields_ = [
        ('tensor_data_num', ctypes.c_uint32),
        ('num_dimensions', ctypes.c_uint32),
        ('size', ctypes.c_uint16 * MAX_NUM_DIMENSIONS),
    ]


# struct CnnOutputTensorInfoExported from libcamera (:57-64)
class CnnOutputTensorInfoExported(ctypes.LittleEndianStructure):
    _fields_ = [
        ('network_name', ctypes.c_char * NETWORK_NAME_LEN),
        ('num_tensors', ctypes.c_uint32),
        ('info', OutputTensorInfo * MAX_NUM_TENSORS),
        ('frameCount', ctypes.c_uint8),
    ]


class ValidationError(Exception):
    """Stands in for jsonschema.exceptions.ValidationError."""


_TYPES: dict[str, type | tuple[type, ...]] = {"object": dict, "string": str, "number": (int, float),
                                              "integer": int, "boolean": bool, "array": list}


def validate(instance: Any, schema: dict[str, Any]) -> None:
    """jsonschema.validate for the keywords NetworkIntrinsics' schema uses, with jsonschema's messages."""
    kind = schema.get("type")
    if kind and (not isinstance(instance, _TYPES[kind]) or (kind != "boolean" and isinstance(instance, bool))):
        raise ValidationError(f"{instance!r} is not of type {kind!r}")
    if "enum" in schema and instance not in schema["enum"]:
        raise ValidationError(f"{instance!r} is not one of {schema['enum']!r}")
    if "minimum" in schema and instance < schema["minimum"]:
        raise ValidationError(f"{instance!r} is less than the minimum of {schema['minimum']!r}")
    if "exclusiveMinimum" in schema and instance <= schema["exclusiveMinimum"]:
        raise ValidationError(f"{instance!r} is less than or equal to the minimum of {schema['exclusiveMinimum']!r}")
    if isinstance(instance, dict):
        for key in schema.get("required", []):
            if key not in instance:
                raise ValidationError(f"{key!r} is a required property")
        properties = schema.get("properties", {})
        for key, value in instance.items():
            if key in properties:
                validate(value, properties[key])
            elif schema.get("additionalProperties") is False:
                raise ValidationError(f"Additional properties are not allowed ({key!r} was unexpected)")
    if isinstance(instance, list) and "items" in schema:
        for item in instance:
            validate(item, schema["items"])


class NetworkIntrinsics:  # :67-299, jsonschema.validate as validate
    def __init__(self, val=None):
        self.__intrinsics: dict | None = None
        self.__schema = {
            "$schema": "https://json-schema.org/draft-07/schema",
            "title": "network_intrinsics",
            "type": "object",
            "properties": {
                "task": {
                    "type": "string",
                    "enum": ["classification", "object detection", "pose estimation", "segmentation"],
                    "description": "Network task",
                },
                "inference_rate": {"type": "number", "minimum": 0},
                "cpu": {
                    "type": "object",
                    "properties": {
                        "bbox_normalization": {"type": "boolean"},
                        "bbox_order": {"type": "string", "enum": ["xy", "yx"]},
                        "softmax": {"type": "boolean"},
                        "post_processing": {"type": "string"},
                    },
                },
                "input_aspect_ratio": {
                    "type": "object",
                    "properties": {
                        "width": {"type": "integer", "exclusiveMinimum": 0},
                        "height": {"type": "integer", "exclusiveMinimum": 0},
                    },
                    "required": ["width", "height"],
                },
                "classes": {
                    "type": "object",
                    "properties": {
                        "labels": {"type": "array", "items": {"type": "string"}},
                        "ignore_undefined": {"type": "boolean"},
                    },
                },
            },
        }
        if val is not None:
            validate(val, self.__schema)
            self.__intrinsics = val

        self.__defaults = {'inference_rate': 30.0}
        validate(self.__defaults, self.__schema | {'additionalProperties': False})

    @property
    def intrinsics(self) -> dict | None:
        return self.__intrinsics

    @intrinsics.setter
    def intrinsics(self, val):
        validate(val, self.__schema)
        self.__intrinsics = val

    def __repr__(self):
        return json.dumps(self.__intrinsics) if self.__intrinsics else ""

    def __top_level_validated_insert(self, val: dict):
        validate(val, self.__schema | {'additionalProperties': False})
        self.__intrinsics = self.__intrinsics | val if self.__intrinsics else val

    def __intrinsics_has_key(self, key: str) -> bool:
        return key in self.__intrinsics if self.__intrinsics else False

    def __intrinsics_get_key(self, key, default=None):
        return self.__intrinsics.get(key, default) if self.__intrinsics else default

    def update_with_defaults(self):
        # Updates intrinsics with default settings (but does not overwrite)
        if not self.__intrinsics:
            self.__intrinsics = {}
        self.__intrinsics = self.__defaults | self.__intrinsics

    @property
    def task(self) -> str | None:
        return self.__intrinsics_get_key('task')

    @task.setter
    def task(self, val: str):
        self.__top_level_validated_insert({'task': val})

    @property
    def inference_rate(self) -> float | None:
        return self.__intrinsics_get_key('inference_rate')

    @inference_rate.setter
    def inference_rate(self, val: float):
        if val < 0:
            if self.__intrinsics is not None:
                self.__intrinsics.pop('inference_rate', None)
        else:
            self.__top_level_validated_insert({'inference_rate': val})

    @property
    def fps(self) -> float | None:
        return self.inference_rate

    @fps.setter
    def fps(self, val: float | None):
        self.inference_rate = val

    def __get_cpu(self, key: str):
        return self.__intrinsics['cpu'].get(key, None) if self.__intrinsics_has_key('cpu') else None

    def __set_cpu(self, val: dict):
        validate({'cpu': val}, self.__schema | {'additionalProperties': False})
        cpu = self.__intrinsics_get_key('cpu', {}) | val
        if self.__intrinsics:
            self.__intrinsics['cpu'] = cpu
        else:
            self.__intrinsics = {'cpu': cpu}

    def __drop_empty_cpu(self):
        if self.__intrinsics_has_key('cpu') and len(self.__intrinsics['cpu']) == 0:
            self.__intrinsics.pop('cpu')

    @property
    def bbox_normalization(self) -> bool | None:
        return self.__get_cpu('bbox_normalization')

    @bbox_normalization.setter
    def bbox_normalization(self, val: bool | None):
        if val is None:
            return
        if val:
            self.__set_cpu({'bbox_normalization': val})
        elif self.__intrinsics_has_key('cpu'):
            self.__intrinsics['cpu'].pop('bbox_normalization', None)
        self.__drop_empty_cpu()

    @property
    def bbox_order(self) -> str | None:
        return self.__get_cpu('bbox_order')

    @bbox_order.setter
    def bbox_order(self, val: str):
        if val not in ["xy", "yx"]:
            raise ValueError("bbox_order must be either 'xy' or 'yx'")
        self.__set_cpu({'bbox_order': val})
        self.__drop_empty_cpu()

    @property
    def softmax(self) -> bool | None:
        return self.__get_cpu('softmax')

    @softmax.setter
    def softmax(self, val: bool | None):
        if val is None:
            return
        if val:
            self.__set_cpu({'softmax': val})
        elif self.__intrinsics_has_key('cpu'):
            self.__intrinsics['cpu'].pop('softmax', None)
        self.__drop_empty_cpu()

    @property
    def postprocess(self) -> str | None:
        return self.__get_cpu('post_processing')

    @postprocess.setter
    def postprocess(self, val: str):
        if val != "":
            self.__set_cpu({'post_processing': val})
        elif self.__intrinsics_has_key('cpu'):
            self.__intrinsics['cpu'].pop('post_processing', None)
        self.__drop_empty_cpu()

    @property
    def preserve_aspect_ratio(self) -> bool | None:
        if not self.__intrinsics_has_key('input_aspect_ratio'):
            return None
        ar = self.__intrinsics['input_aspect_ratio']
        return ar['width'] == ar['height']

    @preserve_aspect_ratio.setter
    def preserve_aspect_ratio(self, val: bool | None):
        if val is None:
            return
        if val:
            iar = {'input_aspect_ratio': {'width': 1, 'height': 1}}
            self.__top_level_validated_insert(iar)
        elif self.__intrinsics_has_key('input_aspect_ratio'):
            self.__intrinsics.pop('input_aspect_ratio')

    @property
    def labels(self) -> list[str] | None:
        return self.__intrinsics['classes'].get('labels', None) if self.__intrinsics_has_key('classes') else None

    @labels.setter
    def labels(self, val: list[str]):
        if len(val) != 0:
            classes = {'labels': val}
            validate({'classes': classes}, self.__schema | {'additionalProperties': False})
            classes = self.__intrinsics_get_key('classes', {}) | classes
            if self.__intrinsics:
                self.__intrinsics['classes'] = classes
            else:
                self.__intrinsics = {'classes': classes}
        elif self.__intrinsics_has_key('classes'):
            self.__intrinsics['classes'].pop('labels', None)
            if len(self.__intrinsics['classes']) == 0:
                self.__intrinsics.pop('classes')

    @property
    def ignore_dash_labels(self) -> bool | None:
        if not self.__intrinsics_has_key('classes'):
            return None
        return self.__intrinsics['classes'].get('ignore_undefined', None)

    @ignore_dash_labels.setter
    def ignore_dash_labels(self, val: bool | None):
        if val is None:
            return
        if val:
            iu = {'ignore_undefined': val}
            validate({'classes': iu}, self.__schema | {'additionalProperties': False})
            classes = {'classes': self.__intrinsics_get_key('classes', {}) | iu}
            self.__intrinsics = self.__intrinsics | classes if self.__intrinsics else classes
        elif self.__intrinsics_has_key('classes'):
            self.__intrinsics['classes'].pop('ignore_undefined', None)
            if len(self.__intrinsics['classes']) == 0:
                self.__intrinsics.pop('classes')


class IMX500:
    class FwProgressType(IntEnum):  # :303-306
        NONE = (0,)  # fw update progress bar not available
        DIRECT = (1,)  # can read files in /sys/kernel/debug directly
        INDIRECT = 2  # need to use debug_stream* scripts with passwordless sudo

    def __init__(self, network_file: str, camera_id: str = '', tensor_injection: bool = False):
        self.device_fd = None
        self.__cfg = {'network_file': network_file, 'input_tensor': {}}

        imx500_device_id = None
        spi_device_id = None
        for camera in settings().get("cameras", []):  # in place of the v4l-subdev scan (:312-332)
            of_node = f"/sys/firmware/devicetree{camera['Id']}"
            if camera.get("Model") == "imx500" and (camera_id == '' or camera_id in of_node):
                self.__driver = standin().imx500_driver(camera["Id"])
                self.device_fd = self.__driver.open()
                imx500_device_id = self.__driver.device_id
                spi_device_id = imx500_device_id.replace('001a', '0040')
                camera_info = standin().Picamera2.global_camera_info()
                self.__camera_num = next(
                    c['Num'] for c in camera_info if c['Model'] == 'imx500' and c['Id'] in of_node
                )
                break

        if self.device_fd is None:
            raise RuntimeError('IMX500: Requested camera dev-node not found')

        self.imx500_device_id = imx500_device_id
        self.spi_device_id = spi_device_id

        # Find out how, if at all, we can access the debugfs files that tell us the
        # firmware upload progress.
        try:
            self.fw_progress = IMX500.FwProgressType.DIRECT
            self._fw_progress_read()
            self._fw_progress_chunk_read()
        except subprocess.CalledProcessError:
            try:
                self.fw_progress = IMX500.FwProgressType.INDIRECT
                self._fw_progress_read()
                self._fw_progress_chunk_read()
            except subprocess.CalledProcessError:
                self.fw_progress = IMX500.FwProgressType.NONE
                print("IMX500 firmware update progress bar is not available")

        if self.config['network_file'] != '':
            if tensor_injection:
                raise NotImplementedError("stand-in IMX500: no tensor injection")
            self.__set_network_firmware(os.path.abspath(self.config['network_file']))
            self.__ni_from_network(os.path.abspath(self.config['network_file']))

        if 'norm_val' not in self.__cfg['input_tensor']:
            self.__cfg['input_tensor']['norm_val'] = [-2048, -2048, -2048]
        if 'norm_shift' not in self.__cfg:
            self.__cfg['input_tensor']['norm_shift'] = [4, 4, 4]
        if 'div_val' not in self.__cfg:
            self.__cfg['input_tensor']['div_val'] = [1024, 1024, 1024]
        if 'div_shift' not in self.__cfg:
            self.__cfg['input_tensor']['div_shift'] = 6

        full_sensor = self.__get_full_sensor_resolution()
        self.set_inference_roi_abs(full_sensor.to_tuple())

    def __check_output(self, cmd: list[str], read) -> str:
        """subprocess.check_output(cmd): the file's text, if $FAKE_PICAMERA2 lets it be read that way."""
        readable = {"direct": (IMX500.FwProgressType.DIRECT, IMX500.FwProgressType.INDIRECT),
                    "indirect": (IMX500.FwProgressType.INDIRECT,), "none": ()}
        if self.fw_progress not in readable[settings().get("imx500", {}).get("fw_progress", "direct")]:
            raise subprocess.CalledProcessError(1, cmd)
        return read()

    def _fw_progress_read(self):  # :373-379
        assert self.fw_progress != IMX500.FwProgressType.NONE
        if self.fw_progress == IMX500.FwProgressType.DIRECT:
            cmd = ["cat", f"/sys/kernel/debug/imx500-fw:{self.imx500_device_id}/fw_progress"]
        else:
            cmd = ["sudo", "-n", "/usr/sbin/debug_stream_imx500.sh", f"{self.imx500_device_id}"]
        return self.__check_output(cmd, self.__driver.debugfs_fw_progress)

    def _fw_progress_chunk_read(self):  # :381-387
        assert self.fw_progress != IMX500.FwProgressType.NONE
        if self.fw_progress == IMX500.FwProgressType.DIRECT:
            cmd = ["cat", f"/sys/kernel/debug/rp2040-spi:{self.spi_device_id}/transfer_progress"]
        else:
            cmd = ["sudo", "-n", "/usr/sbin/debug_stream_rp2040.sh", f"{self.spi_device_id}"]
        return self.__check_output(cmd, self.__driver.debugfs_transfer_progress)

    @staticmethod
    def __get_full_sensor_resolution():
        """Full sensor resolution as a Rectangle object."""
        return Rectangle(0, 0, 4056, 3040)

    def __del__(self):
        if self.device_fd:
            self.device_fd.close()

    @property
    def camera_num(self):
        return self.__camera_num

    @property
    def config(self) -> dict:
        return self.__cfg

    @property
    def network_intrinsics(self) -> NetworkIntrinsics | None:
        return self.__cfg.get('intrinsics', None)

    def get_fw_upload_progress(self, stage_req) -> tuple:  # :469-487
        """Returns the current progress of the fw upload in the form of (current, total)."""
        progress = self._fw_progress_read().strip().split()
        stage = int(progress[0])
        progress_block = int(progress[1])
        size = int(progress[2])

        progress_chunk = int(self._fw_progress_chunk_read().strip())

        if stage == stage_req:
            return (min(progress_block + progress_chunk, size), size)
        else:
            return (0, 0)

    def show_network_fw_progress_bar(self):  # :489-495, a thread in place of the process
        if self.fw_progress == IMX500.FwProgressType.NONE:
            return
        threading.Thread(target=self.__do_progress_bar, args=(FW_NETWORK_STAGE, 'Network Firmware Upload'),
                         daemon=True).start()

    def __do_progress_bar(self, stage_req, title):  # :497-509
        from tqdm import tqdm

        with tqdm(unit='bytes', unit_scale=True, unit_divisor=1024, desc=title, leave=True) as t:
            last_update = 0
            while True:
                current, total = self.get_fw_upload_progress(stage_req)
                if total:
                    t.total = total
                    t.update(current - last_update)
                    last_update = current
                    if current > 0.95 * total:
                        t.update(total - last_update)
                        break
                time.sleep(0.5)

    def get_input_size(self) -> tuple:
        """Get the model input tensor size as (width, height)."""
        return self.config['input_tensor_size']

    def get_outputs(self, metadata: dict, add_batch=False) -> list[np.ndarray] | None:  # :660-677
        """Get the model outputs."""
        output_tensor = metadata.get('CnnOutputTensor')
        if not output_tensor:
            return None

        np_output = np.fromiter(output_tensor, dtype=np.float32)
        output_shapes = self.get_output_shapes(metadata)
        offset = 0
        outputs = []
        for tensor_shape in output_shapes:
            size = np.prod(tensor_shape)
            reshaped_tensor = np_output[offset : offset + size].reshape(tensor_shape, order='F')
            if add_batch:
                reshaped_tensor = np.expand_dims(reshaped_tensor, 0)
            outputs.append(reshaped_tensor)
            offset += size
        return outputs

    def get_output_shapes(self, metadata: dict) -> list[tuple[int]]:  # :679-685
        """Get the model output shapes if no output return empty list."""
        output_tensor_info = metadata.get('CnnOutputTensorInfo')
        if not output_tensor_info:
            return []
        output_tensor_info = self.__get_output_tensor_info(output_tensor_info)['info']
        return [o['size'] for o in output_tensor_info]

    def __ioctl(self, set_control) -> None:
        """fcntl.ioctl(self.device_fd, ...): a closed file has no descriptor to give it."""
        if self.device_fd.closed:
            raise ValueError("I/O operation on closed file")
        set_control()

    def set_inference_roi_abs(self, roi: tuple):  # :687-716
        """
        Set the absolute inference image crop.

        Specify an absolute region of interest in the form a (left, top, width, height) crop for the input inference
        image. The co-ordinates are based on the full sensor resolution.
        """
        roi = Rectangle(*roi)
        roi = roi.bounded_to(self.__get_full_sensor_resolution())

        try:
            self.__ioctl(lambda: self.__driver.set_window((roi.x, roi.y, roi.width, roi.height)))
            self.__cfg['roi'] = roi
        except OSError as err:
            print(f'IMX500: Unable to set ROI control in the device driver: {err}')

    def set_inference_aspect_ratio(self, aspect_ratio: tuple):  # :718-728
        """
        Set the aspect ratio of the inference image.

        Specify a pixel aspect ratio needed for the input inference image relative to the full sensor resolution.
        This simply calculates an ROI based on a centre crop and calls set_inference_roi_abs().
        """
        f = self.__get_full_sensor_resolution()
        r = f.size.bounded_to_aspect_ratio(Size(aspect_ratio[0], aspect_ratio[1]))
        r = r.centered_to(f.center).enclosed_in(f)
        self.set_inference_roi_abs(r.to_tuple())

    def set_auto_aspect_ratio(self):  # :730-732
        """Set the inference image crop to presereve the input tensor aspect ratio."""
        self.set_inference_aspect_ratio(self.config['input_tensor_size'])

    def __get_output_tensor_info(self, tensor_info) -> dict:  # :734-762
        """Return the network string along with a list of output tensor parameters."""
        if type(tensor_info) not in [bytes, bytearray]:
            tensor_info = bytes(tensor_info)

        size = ctypes.sizeof(CnnOutputTensorInfoExported)
        if len(tensor_info) != size:
            raise ValueError(f'tensor info length {len(tensor_info)} does not match expected size {size}')

        parsed = CnnOutputTensorInfoExported()
        ctypes.memmove(ctypes.addressof(parsed), tensor_info, size)

        result = {
            'network_name': parsed.network_name.decode('utf-8').strip('\x00'),
            'num_tensors': parsed.num_tensors,
            'frameCount': parsed.frameCount,
            'info': [],
        }

        for t in parsed.info[0 : parsed.num_tensors]:
            info = {
                'tensor_data_num': t.tensor_data_num,
                'num_dimensions': t.num_dimensions,
                'size': list(t.size)[0 : t.num_dimensions],
            }
            result['info'].append(info)

        return result

    @staticmethod
    def get_kpi_info(metadata: dict) -> tuple[float, float] | None:  # :776-783
        """Return the KPI parameters in the form (dnn_runtime, dsp_runtime) in milliseconds."""
        kpi_info = metadata.get('CnnKpiInfo')
        if kpi_info is None:
            return None
        dnn_runtime, dsp_runtime = kpi_info[0], kpi_info[1]
        return dnn_runtime / 1000, dsp_runtime / 1000

    def __set_network_firmware(self, network_filename: str):  # :805-821
        """Provides a firmware rpk file to upload to the IMX500. This must be called before Picamera2 is configured."""
        if not os.path.isfile(network_filename):
            raise RuntimeError(f'Firmware file {network_filename} does not exist.')

        with open(network_filename, 'rb') as fp:  # the kernel reads the fd it is given (kernel_read_file_from_fd)
            data = fp.read()
        try:
            self.__ioctl(lambda: self.__driver.set_network(data))
        except OSError as err:
            raise RuntimeError(f'IMX500: Unable to set network firmware {network_filename}: {err}') from err

    def __ni_from_network(self, network_filename: str):  # :823-950
        """Extracts 'network_info.txt' from CPIO-archive appended to the network rpk."""
        with open(network_filename, 'rb') as fp:
            fw = memoryview(fp.read())

        # Iterate through network firmware discarding blocks
        cpio_offset = 0
        while True:
            # Parse header (+ current block size)
            (magic, size) = struct.unpack('>4sI', fw[:8])
            if magic != b'9464':
                break

            # Parse flags
            fw = fw[8:]
            flags = struct.unpack('8B', fw[:8])
            device_lock_flag = flags[6]
            fw = fw[(size + 60 - 8) :]  # jump to footer

            # Ensure footer is as expected
            (magic,) = struct.unpack('4s', fw[:4])
            if magic != b'3695':
                raise RuntimeError(f'No matching footer found in firmware file {network_filename}')
            fw = fw[4:]
            cpio_offset += size + 64

            if (device_lock_flag & 0x01) == 1:
                # skip forward 32 bytes if device_lock_flag.bit0 == 1
                fw = fw[32:]
                cpio_offset += 32

        with open(network_filename, 'rb') as fp:  # fd_reader(cpio_fd) after lseek to cpio_offset
            fp.seek(cpio_offset)
            archive = fp.read()
        for name, content in imx500_rpk.read_newc(archive):
            if name == 'network_info.txt':
                self.__cfg['network_info_raw'] = content
            elif name == 'network_intrinsics':
                self.__cfg['intrinsics'] = NetworkIntrinsics(json.loads(content))

        if 'network_info_raw' not in self.__cfg:
            return

        res = {}
        buf = io.StringIO(self.__cfg['network_info_raw'].decode('ascii'))
        for line in buf:
            key, value = line.strip().split('=')
            if key == 'networkID':
                nid: int = 0
                for idx, x in enumerate(value):
                    nid |= (ord(x) - ord('0')) << (20 - idx * 4)
                res[key] = nid
            if key == 'apParamSize':
                res[key] = int(value)
            if key == 'networkNum':
                res[key] = int(value)

        res['network'] = {}
        networks = self.__cfg['network_info_raw'].decode('ascii').split('networkOrdinal=')[1:]
        for nw in networks:
            buf = io.StringIO(nw)
            nw_idx = int(buf.readline())
            nw_properties = {}
            for line in buf:
                key, value = line.strip().split('=')
                nw_properties[key] = value
            res['network'][nw_idx] = nw_properties

        if len(res['network']) != res['networkNum']:
            raise RuntimeError('Insufficient networkNum settings in network_info.txt')

        self.__cfg['network_info'] = res

        # Extract some input tensor config params
        self.__cfg['input_tensor']['width'] = int(res['network'][0]['inputTensorWidth'])
        self.__cfg['input_tensor']['height'] = int(res['network'][0]['inputTensorHeight'])
        self.__cfg['input_tensor_size'] = (self.config['input_tensor']['width'], self.config['input_tensor']['height'])

        network = self.__cfg['network_info']['network'][0]
        input_format = network['inputTensorFormat']
        norm = {key: int(network[f'inputTensorNorm_{key}'], 0) for key in
                ('K03', 'K13', 'K23', 'K00', 'K22', 'K02', 'K20', 'K11')}

        self.__cfg['input_tensor']['input_format'] = input_format

        def signed(value: int, sign_bit: int, mask: int) -> int:
            return value if ((value >> sign_bit) & 1) == 0 else -((~value + 1) & mask)

        if input_format == 'RGB' or input_format == 'BGR':
            self.__cfg['input_tensor']['norm_val'] = [signed(norm[k], 12, 0x1FFF) for k in ('K03', 'K13', 'K23')]
            self.__cfg['input_tensor']['norm_shift'] = [4, 4, 4]
            self.__cfg['input_tensor']['dtype'] = 'unsigned' if ((norm['K03'] >> 12) & 1) == 0 else 'signed'
            outer = ('K00', 'K22') if input_format == 'RGB' else ('K02', 'K20')
            div_val_0, div_val_2 = (signed(norm[k], 11, 0x0FFF) for k in outer)
            div_val_1 = signed(norm['K11'], 11, 0x0FFF)
            self.__cfg['input_tensor']['div_val'] = [div_val_0, div_val_1, div_val_2]
            self.__cfg['input_tensor']['div_shift'] = 6
