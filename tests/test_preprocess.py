import numpy as np
import pytest

from edge_infer.models.tensors import TensorSpec
from edge_infer.pipeline.preprocess import Preprocessor, Window, halvings, pixel_to_input, plan_resize


def spec(dtype, scale=0.0, zero_point=0, size=8) -> TensorSpec:
    return TensorSpec(0, (1, size, size, 3), dtype, scale, zero_point)


class TestPlanResize:
    def test_center_crop_cuts_the_long_side_symmetrically(self):
        plan = plan_resize(480, 640, 224, 224, "center")
        assert plan.source == Window(80, 0, 480, 480)
        assert plan.target == Window(0, 0, 224, 224)

    def test_center_crop_of_a_tall_frame(self):
        plan = plan_resize(929, 512, 128, 128, "center")
        assert plan.source == Window(0, 208, 512, 512)

    def test_stretch_keeps_the_whole_frame(self):
        assert plan_resize(480, 640, 224, 224, "stretch").source == Window(0, 0, 640, 480)

    def test_letterbox_fits_and_centres_the_whole_frame(self):
        plan = plan_resize(480, 640, 224, 224, "letterbox")
        assert plan.source == Window(0, 0, 640, 480)
        assert plan.target == Window(0, 28, 224, 168)  # 224 * 480/640 = 168, (224-168)/2 = 28

    def test_square_frame_needs_no_crop_in_any_mode(self):
        for mode in ("center", "stretch", "letterbox"):
            plan = plan_resize(300, 300, 224, 224, mode)
            assert plan.source == Window(0, 0, 300, 300) and plan.target == Window(0, 0, 224, 224)


class TestPixelToInput:
    def test_mobilenet_uint8_is_a_plain_copy(self):
        gain, offset = pixel_to_input(spec(np.uint8, 1 / 128, 128), 128.0, 128.0)
        assert gain == pytest.approx(1.0) and offset == pytest.approx(0.0)

    def test_float_input_maps_pixels_to_minus_one_to_one(self):
        gain, offset = pixel_to_input(spec(np.float32), 127.5, 127.5)
        assert 0 * gain + offset == pytest.approx(-1.0)
        assert 255 * gain + offset == pytest.approx(1.0)

    def test_int8_is_a_shift_by_128(self):
        gain, offset = pixel_to_input(spec(np.int8, 1 / 128, 0), 128.0, 128.0)
        assert gain == pytest.approx(1.0) and offset == pytest.approx(-128.0)


def bgr_quadrants(height=64, width=64) -> np.ndarray:
    """Left half pure blue, right half pure red, in OpenCV's BGR order."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (255, 0, 0)
    image[:, width // 2:] = (0, 0, 255)
    return image


class TestPreprocessor:
    def test_uint8_copy_converts_bgr_to_rgb(self):
        out = np.zeros((8, 8, 3), np.uint8)
        Preprocessor(spec(np.uint8, 1 / 128, 128), crop="stretch", mean=128, std=128)(bgr_quadrants(), out)
        assert out[:, 0].tolist() == [[0, 0, 255]] * 8  # blue lands in channel 2 (RGB)
        assert out[:, -1].tolist() == [[255, 0, 0]] * 8

    def test_int8_input_is_pixel_minus_128(self):
        out = np.zeros((8, 8, 3), np.int8)
        Preprocessor(spec(np.int8, 1 / 128, 0), crop="stretch", mean=128, std=128)(bgr_quadrants(), out)
        assert out[0, 0].tolist() == [-128, -128, 127]

    def test_float_input_is_normalised(self):
        out = np.zeros((8, 8, 3), np.float32)
        Preprocessor(spec(np.float32), crop="stretch")(bgr_quadrants(), out)
        np.testing.assert_allclose(out[0, 0], [-1.0, -1.0, 1.0])
        np.testing.assert_allclose(out[0, -1], [1.0, -1.0, -1.0])

    def test_other_quantization_is_computed_and_clipped(self):
        # scale 1/64, zero point 10: q = (p - 127.5)/127.5 * 64 + 10, so 0 -> -54 (clipped to 0), 255 -> 74
        out = np.zeros((8, 8, 3), np.uint8)
        Preprocessor(spec(np.uint8, 1 / 64, 10), crop="stretch")(bgr_quadrants(), out)
        assert out[0, 0].tolist() == [0, 0, 74]

    def test_center_crop_drops_the_sides(self):
        # A 16x48 frame: the centre 16x16 is green, the sides red; the crop must see only green.
        image = np.zeros((16, 48, 3), np.uint8)
        image[:] = (0, 0, 255)
        image[:, 16:32] = (0, 255, 0)
        out = np.zeros((8, 8, 3), np.uint8)
        Preprocessor(spec(np.uint8, 1 / 128, 128), crop="center", mean=128, std=128)(image, out)
        assert (out == [0, 255, 0]).all()

    def test_letterbox_pads_with_the_mean(self):
        image = np.full((16, 32, 3), 255, np.uint8)
        out = np.zeros((8, 8, 3), np.uint8)
        Preprocessor(spec(np.uint8, 1 / 128, 128), crop="letterbox", mean=128, std=128)(image, out)
        assert (out[:2] == 128).all() and (out[-2:] == 128).all()  # 8 * 16/32 = 4 rows of image, 2 of pad each side
        assert (out[2:6] == 255).all()

    def test_frame_size_change_replans(self):
        out = np.zeros((8, 8, 3), np.uint8)
        pre = Preprocessor(spec(np.uint8, 1 / 128, 128), crop="center", mean=128, std=128)
        pre(np.full((16, 32, 3), 10, np.uint8), out)
        pre(np.full((40, 20, 3), 200, np.uint8), out)
        assert (out == 200).all()

    def test_writes_into_the_given_buffer_without_replacing_it(self):
        out = np.zeros((8, 8, 3), np.uint8)
        address = out.__array_interface__["data"][0]
        Preprocessor(spec(np.uint8, 1 / 128, 128), mean=128, std=128)(bgr_quadrants(), out)
        assert out.__array_interface__["data"][0] == address and out.any()


class TestBoxLinear:
    def test_halvings_trim_to_whole_blocks(self):
        trimmed, sizes = halvings(Window(80, 0, 481, 481), 224, 224)
        assert trimmed == Window(80, 0, 480, 480) and sizes == [(240, 240)]
        trimmed, sizes = halvings(Window(0, 0, 1280, 720), 224, 128)
        assert sizes == [(640, 360), (320, 180)] and trimmed == Window(0, 0, 1280, 720)

    def test_no_halving_below_twice_the_target(self):
        assert halvings(Window(0, 0, 300, 300), 224, 224) == (Window(0, 0, 300, 300), [])

    def test_fine_detail_averages_instead_of_aliasing(self):
        # One-pixel stripes shrunk 4.6x: a box filter sees mid grey; plain linear samples stripes and aliases.
        stripes = np.zeros((64, 64, 3), np.uint8)
        stripes[:, ::2] = 255
        spec_ = spec(np.uint8, 1 / 128, 128, size=14)
        out = np.zeros((14, 14, 3), np.uint8)
        Preprocessor(spec_, crop="stretch", interpolation="box_linear", mean=128, std=128)(stripes, out)
        assert np.abs(out.astype(int) - 128).max() <= 1
        Preprocessor(spec_, crop="stretch", interpolation="linear", mean=128, std=128)(stripes, out)
        assert np.abs(out.astype(int) - 128).max() > 60
