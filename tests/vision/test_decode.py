"""Reading users' pictures (vision/decode.py): bounded bytes, sizes checked from the header before any
pixel is decoded, and one guard that turns whatever a decoder raises into an ImageError naming the file."""

from __future__ import annotations

import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mlknobs.errors import ImageError
from mlknobs.vision import decode
from mlknobs.vision.decode import MAX_ASPECT, MAX_SIDE, load_image, to_grayscale
from mlknobs.vision.images import read_input
from pictures import UNDECODABLE, bad_inputs, encode, enlarged, png_header_only, png_of_zeros, u8


@pytest.fixture(scope="module")
def test_digits(synthetic_splits):
    return synthetic_splits[1]


def one_line_naming(error: ImageError, name) -> str:
    message = str(error)
    assert message.startswith(str(name)) and "\n" not in message, message
    return message


def test_exif_orientation_is_applied(test_digits):
    upright = Image.fromarray(u8(1 - enlarged(test_digits.images[3], np.random.default_rng(3))))
    exif = Image.Exif()
    exif[0x0112] = 6                             # "rotate 90° clockwise to display"
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    assert np.array_equal(read_input(encode(stored, "PNG", exif=exif)), read_input(encode(upright, "PNG")))


def test_large_pictures_are_reduced_first(test_digits):
    ink = enlarged(test_digits.images[4], np.random.default_rng(4), low=40, high=40)   # ~2000 px
    picture = Image.fromarray(u8(1 - ink))
    gray = to_grayscale(load_image(encode(picture, "PNG")))
    assert max(gray.shape) <= 512
    small = read_input(encode(picture.resize((picture.width // 8, picture.height // 8)), "PNG"))
    assert np.abs(read_input(encode(picture, "JPEG", quality=90)).astype(int) - small).mean() < 6


def test_bad_inputs_raise_image_error_naming_the_file(tmp_path):
    for name, word in bad_inputs(tmp_path).items():
        path = tmp_path / name
        with pytest.raises(ImageError) as caught:
            read_input(path)
        message = str(caught.value)
        assert message.startswith(str(path)) and word in message, message
        assert "\n" not in message


def test_bad_bytes_raise_image_error():
    with pytest.raises(ImageError, match="<stdin>: empty"):
        read_input(b"", name="<stdin>")
    with pytest.raises(ImageError, match="<stdin>: not an image"):
        read_input(b"GIF89a but not really", name="<stdin>")


def test_a_float_picture_with_infinite_values_is_a_clear_error(tmp_path):
    values = np.zeros((40, 40), np.float32)
    values[10:30, 18:22] = np.inf
    path = tmp_path / "inf.tif"
    Image.fromarray(values, mode="F").save(path)
    with pytest.raises(ImageError, match="NaN or infinity"):
        read_input(path, "mnist")


def test_a_huge_jpeg_decodes_at_reduced_size_instead_of_being_refused(tmp_path):
    from PIL import ImageDraw

    image = Image.new("L", (12000, 9000), 255)      # 108 megapixels, as some phones take
    ImageDraw.Draw(image).line([(3000, 2000), (9000, 2000), (5000, 8000)], fill=0, width=400)
    path = tmp_path / "huge.jpg"
    image.save(path, quality=70)
    assert read_input(path, "mnist").shape == (784,)


@pytest.mark.parametrize("make, word", [
    (lambda p: __import__("os").mkfifo(p), "FIFO"),
    (lambda p: p.symlink_to("/dev/zero"), "character device"),
    (lambda p: p.symlink_to("/dev/urandom"), "character device"),
])
def test_a_picture_path_that_never_ends_is_refused_at_once(tmp_path, no_hang, make, word):
    path = tmp_path / "digit.png"
    make(path)
    with pytest.raises(ImageError, match=word) as caught:
        read_input(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_a_picture_file_above_the_size_limit_is_refused_unread(tmp_path):
    from mlknobs.vision.decode import MAX_PICTURE_BYTES

    path = tmp_path / "huge.png"
    with open(path, "wb") as f:
        f.truncate(MAX_PICTURE_BYTES + 1)                      # sparse: takes no disk
    with pytest.raises(ImageError, match=r"too large for a picture \(limit 64 MiB\)"):
        read_input(path)


def test_picture_bytes_above_the_size_limit_are_refused(monkeypatch):
    monkeypatch.setattr(decode, "MAX_PICTURE_BYTES", 1000)
    with pytest.raises(ImageError, match="<stdin>: 1001 bytes is too large for a picture"):
        read_input(b"\x89PNG" + bytes(997), name="<stdin>")


def test_an_endless_stdin_stops_at_the_picture_limit(no_hang):
    """How `predict -` reads stdin: read_bounded(stdin, MAX_PICTURE_BYTES, "<stdin>", ...)."""
    from mlknobs.files import read_bounded
    from mlknobs.vision.images import MAX_PICTURE_BYTES

    with open("/dev/zero", "rb") as endless, pytest.raises(ImageError, match="<stdin>: more than 64 MiB"):
        read_bounded(endless, MAX_PICTURE_BYTES, "<stdin>", error=ImageError, kind="picture")


# --- a decoder may raise anything: one guard makes it an ImageError --------------------------------------

@pytest.mark.parametrize("name", sorted(UNDECODABLE))
def test_pictures_pillow_opens_but_cannot_decode_are_image_errors(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(UNDECODABLE[name])
    for source, shown in ((path, path), (UNDECODABLE[name], "<stdin>")):
        with pytest.raises(ImageError) as caught:
            read_input(source, name="<stdin>" if shown == "<stdin>" else None)
        one_line_naming(caught.value, shown)


def test_an_unimplemented_pixel_format_says_so():
    with pytest.raises(ImageError, match=r"<stdin>: a kind of picture Pillow cannot decode \(Unimplemented "
                                         r"pixel format .*\); convert it to PNG or JPEG"):
        read_input(UNDECODABLE["unknown-fourcc.dds"], name="<stdin>")


@pytest.mark.parametrize("raised", [NotImplementedError("no such codec"), KeyError("tile"), AttributeError("fp"),
                                    RuntimeError("decoder state"), RecursionError("deep"), struct.error("unpack"),
                                    ZeroDivisionError("division"), AssertionError("plugin"), IndexError("palette")])
@pytest.mark.parametrize("stage", ["load", "convert"])
def test_whatever_a_decoder_raises_becomes_an_image_error(monkeypatch, test_digits, raised, stage):
    from PIL import ImageFile

    def broken(self, *args, **kwargs):
        raise raised

    drawing = Image.fromarray(u8(1 - enlarged(test_digits.images[0], np.random.default_rng(0))))
    picture = encode(drawing.quantize(16), "PNG")           # a palette: converted to gray levels
    monkeypatch.setattr(ImageFile.ImageFile if stage == "load" else Image.Image, stage, broken)
    with pytest.raises(ImageError) as caught:
        read_input(picture, name="digit.png")
    assert caught.value.__cause__ is raised
    one_line_naming(caught.value, "digit.png")


def test_ctrl_c_during_a_decode_is_not_swallowed(monkeypatch):
    from PIL import ImageFile

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(ImageFile.ImageFile, "load", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_image(encode(Image.new("L", (40, 40), 255), "PNG"))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "JPEG2000", "TGA", "PPM", "DDS"])
def test_truncated_pictures_of_every_format_are_image_errors(fmt):
    noise = np.random.default_rng(0).integers(0, 255, (120, 120), np.uint8)
    data = encode(Image.fromarray(noise).convert("RGB" if fmt == "DDS" else "L"), fmt)
    for cut in (len(data) // 2, 60):
        with pytest.raises(ImageError) as caught:
            read_input(data[:cut], name="<stdin>")
        one_line_naming(caught.value, "<stdin>")


# --- shapes that cost more than their pixels: the header is checked before any pixel is decoded -------

def bmp_header(width: int, height: int) -> bytes:
    """A BMP announcing `width`×`height` 8-bit pixels, with none of them."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 0, 0, 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 1024, 0, 0, 14 + 40 + 1024) + info + bytes(1024)


def gif_header(width: int, height: int) -> bytes:
    """A GIF announcing a `width`×`height` screen and frame, its pixel data cut short."""
    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + bytes(6)
            + b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x4c\x01\x00;")


@pytest.mark.parametrize("make, width, height", [
    (png_header_only, 1, 64_000_000), (png_header_only, 64_000_000, 1), (png_header_only, MAX_SIDE + 1, 1000),
    (png_header_only, 1, MAX_SIDE), (png_header_only, 10, 10 * MAX_ASPECT + 1), (png_header_only, 3000, 2),
    (bmp_header, 1, 64_000_000), (bmp_header, 2_000_000, 32), (gif_header, 1, 65_535), (gif_header, 65_535, 2),
])
def test_giant_and_degenerate_shapes_are_refused_from_the_header(no_hang, make, width, height):
    with pytest.raises(ImageError, match=r"too (large|narrow)") as caught:
        read_input(make(width, height), name="<stdin>")
    message = one_line_naming(caught.value, "<stdin>")
    assert f"{width}×{height}" in message


@pytest.mark.parametrize("width, height", [(64, 64 * MAX_ASPECT), (MAX_SIDE, MAX_SIDE // MAX_ASPECT)])
def test_the_longest_and_narrowest_shapes_allowed_still_decode(width, height):
    picture = png_of_zeros(width, height)
    assert load_image(picture).size == (width, height)
    assert max(to_grayscale(load_image(picture)).shape) <= decode.WORK_SIZE


PEAK = """
import sys, time
from mlknobs.errors import ImageError
from mlknobs.vision.images import read_input
data = open(sys.argv[1], "rb").read()
start = time.perf_counter()
try:
    read_input(data, name="<stdin>")
    outcome = "read"
except ImageError as e:
    outcome = str(e)
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(time.perf_counter() - start, peak_kb // 1024, outcome, sep="\\n")
"""


def time_and_peak_mb(tmp_path, data: bytes) -> tuple[float, int, str]:
    """Seconds and peak resident MB of reading a picture, in a fresh process, and what came of it.

    (The kernel's high-water mark of this process alone: getrusage's maxrss would count the parent's
    memory at the fork.)"""
    path = tmp_path / "picture"
    path.write_bytes(data)
    lines = subprocess.run([sys.executable, "-c", PEAK, str(path)], capture_output=True, text=True,
                           check=True, timeout=120).stdout.splitlines()
    return float(lines[0]), int(lines[1]), lines[2]


@pytest.mark.parametrize("width, height, color_type, palette", [
    (1, 64_000_000, 6, b""), (64_000_000, 1, 0, b""), (1, 64_000_000, 3, bytes(range(256)) * 3),
])
def test_a_complete_degenerate_png_is_refused_in_a_moment_and_little_memory(tmp_path, width, height,
                                                                          color_type, palette):
    """Before: 1 × 64,000,000 RGBA took 7.5 s and 2 GB to end in "no ink found"."""
    seconds, peak_mb, outcome = time_and_peak_mb(tmp_path, png_of_zeros(width, height, color_type, palette))
    assert "too large" in outcome or "too narrow" in outcome
    assert seconds < 0.5 and peak_mb < 150


def test_a_64_megapixel_palette_png_decodes_within_its_bound(tmp_path):
    """The largest picture allowed, as a palette PNG: one byte a pixel decoded, then reduced."""
    seconds, peak_mb, outcome = time_and_peak_mb(tmp_path, png_of_zeros(8000, 8000, 3, bytes(range(256)) * 3))
    assert "no ink" in outcome                              # decoded, and blank
    assert peak_mb < 400


# --- decoding smaller where the format allows it ----------------------------------------------------------

def a_big_seven(width: int = 4000, height: int = 3000) -> Image.Image:
    from PIL import ImageDraw

    image = Image.new("L", (width, height), 255)
    ImageDraw.Draw(image).line([(1500, 500), (2500, 500), (1800, 2500)], fill=0, width=120)
    return image


def test_a_large_jpeg_2000_decodes_at_a_reduced_size(monkeypatch):
    seven = a_big_seven()
    reduced = load_image(encode(seven, "JPEG2000"))
    assert max(reduced.size) < 1100                        # halved twice: 1000 x 750
    whole = read_input(encode(seven.resize((1000, 750), Image.Resampling.BOX), "PNG"))
    assert np.abs(read_input(encode(seven, "JPEG2000")).astype(int) - whole).mean() < 6


def test_a_jpeg_2000_with_fewer_levels_than_asked_decodes_whole():
    seven = a_big_seven()
    data = encode(seven, "JPEG2000", num_resolutions=1)    # no reduced resolution stored at all
    assert load_image(data).size == seven.size
    assert read_input(data).shape == (784,)
