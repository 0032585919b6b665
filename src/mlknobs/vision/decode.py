"""Reading a user's picture: its bytes, bounded; its header, checked; its decode, guarded; gray levels.

    load_image(path or bytes) -> Image     the first frame, decoded, upright as displayed
    to_grayscale(image) -> (H, W) float32  0..1 (0 = black), at most WORK_SIZE per side, colours as
                                           luminance, transparency composited onto a background

A picture comes from anyone (a file, stdin, a web page), so every step is bounded before it is
paid for: the file is a regular file of at most MAX_PICTURE_BYTES, read whole; the header's size
is checked before any pixel is decoded (at most MAX_SIDE pixels a side, at most MAX_ASPECT times
as long as wide, at most MAX_PIXELS pixels), so the decoded image takes at most 4 bytes a pixel
(256 MB) in at most MAX_SIDE rows; JPEG and JPEG 2000 are decoded at a reduced size when they are
far larger than needed. Pillow's decoders may raise anything on a file they cannot read
(NotImplementedError for a DDS pixel format, OSError, ValueError, struct.error, ...): `decoding`
is the one guard that turns all of it into ImageError naming the picture.

Pillow is imported inside the functions: `mlknobs --help` should not pay for it.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlknobs.errors import ImageError
from mlknobs.files import human_size, open_regular, read_bounded
from mlknobs.text import error_line

if TYPE_CHECKING:
    from PIL import Image

MAX_PIXELS = 64_000_000      # refuse larger pictures (a 64-megapixel RGBA decodes to 256 MB)
# Refuse larger picture files (and stdin): a 108-megapixel phone JPEG is about 30 MB, so every
# photo fits; uncompressed BMP/TIFF above ~22 megapixels do not (convert them to PNG or JPEG).
MAX_PICTURE_BYTES = 64 * 2**20
# The pixel limit alone lets through shapes that cost far more than their pixels: Pillow keeps a
# row pointer and decodes row by row, so 1 x 64,000,000 pixels took 7.6 s and 2 GB. A picture's
# longest side is at most MAX_SIDE (a 108-megapixel photo: 12,000; a phone panorama: ~16,000), and
# at most MAX_ASPECT times its shortest: a strip longer than that holds no digit.
MAX_SIDE = 32_768
MAX_ASPECT = 64
WORK_SIZE = 512              # pictures are reduced to at most this many pixels per side first
JPEG2000_MAX_REDUCE = 5      # encoders' default 5-6 resolution levels allow halving 5 times


# --- the one guard around Pillow's decoders --------------------------------------------------------------

@contextmanager
def decoding(name: str) -> Iterator[None]:
    """Whatever Pillow raises while it reads or converts a picture becomes one ImageError naming it.

    A decoder may raise anything on a file it cannot read, not only OSError: NotImplementedError
    (a DDS pixel format Pillow lacks), ValueError, SyntaxError, struct.error, IndexError, ... Our
    own ImageErrors pass through; Ctrl-C (not an Exception) too.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        yield
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: image dimensions are too large to decode safely ({error_line(e)})") from e
    except UnidentifiedImageError as e:
        raise ImageError(f"{name}: not an image Pillow can read (convert it to PNG or JPEG)") from e
    except MemoryError as e:
        raise ImageError(f"{name}: too large to decode in the memory available") from e
    except NotImplementedError as e:
        raise ImageError(f"{name}: a kind of picture Pillow cannot decode ({error_line(e)}); "
                         f"convert it to PNG or JPEG") from e
    except Exception as e:   # the point: a decoder may raise anything
        # Truncated or corrupt data surfaces from Pillow's decoders as any exception at all.
        raise ImageError(f"{name}: damaged or truncated image ({error_line(e)})") from e


# --- reading ----------------------------------------------------------------------------------------------

def load_image(source: str | Path | bytes, name: str | None = None) -> Image.Image:
    """Open and fully decode the first frame of a picture, refusing anything unreadable or huge.

    A path must lead to a regular file (not a FIFO, a device such as /dev/zero, a directory, ...)
    of at most MAX_PICTURE_BYTES, and is read whole, with that bound, before decoding; bytes (from
    stdin, read with files.read_bounded(stream, MAX_PICTURE_BYTES, ...)) have the same limit.
    """
    name = name if name is not None else str(source)
    if isinstance(source, bytes):
        data = source
    else:
        with open_regular(Path(source), MAX_PICTURE_BYTES, error=ImageError, name=name,
                          kind="picture") as stream:
            data = read_bounded(stream, MAX_PICTURE_BYTES, name, error=ImageError, kind="picture")
    if not data:
        raise ImageError(f"{name}: empty {'input' if isinstance(source, bytes) else 'file'} (0 bytes)")
    if len(data) > MAX_PICTURE_BYTES:
        raise ImageError(f"{name}: {human_size(len(data))} is too large for a picture "
                         f"(limit {human_size(MAX_PICTURE_BYTES)})")
    with decoding(name):
        return _upright(_decode(data, name))


def _decode(data: bytes, name: str, smaller: bool = True) -> Image.Image:
    """The first frame, its size checked from the header before a pixel is decoded."""
    from PIL import Image

    with warnings.catch_warnings():
        # Pillow warns between its own limit and twice that. Our limits apply instead (beyond twice
        # its limit Pillow refuses anyway), after a large JPEG has been told to decode smaller. Its
        # other warnings are about damage it works around (corrupt EXIF data): nothing to act on.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.simplefilter("ignore", UserWarning)
        image = Image.open(io.BytesIO(data))
        check_size(image.width, image.height, name)
        reduced = smaller and _decode_smaller(image)
        width, height = image.size                     # a JPEG's after draft; a JPEG 2000's after load:
        if reduced:
            width, height = (-(-side // (1 << image.reduce)) for side in (width, height))
        if width * height > MAX_PIXELS:
            raise ImageError(f"{name}: {width}×{height} pixels is too large "
                             f"(limit {MAX_PIXELS // 1_000_000} megapixels)")
        try:
            image.load()
        except MemoryError:
            raise
        except Exception:   # a JPEG 2000 with fewer levels than the reduction asked for
            if not reduced:
                raise
            return _decode(data, name, smaller=False)
    if image.width < 1 or image.height < 1:
        raise ImageError(f"{name}: image has no pixels")
    return image


def check_size(width: int, height: int, name: str) -> None:
    """Refuse a picture whose header announces a size that would cost too much to decode, or no size."""
    if width < 1 or height < 1:
        raise ImageError(f"{name}: image has no pixels")
    if max(width, height) > MAX_SIDE:
        raise ImageError(f"{name}: {width}×{height} pixels is too large (at most {MAX_SIDE:,} pixels a side)")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageError(f"{name}: {width}×{height} pixels is too narrow to hold a digit (one side more "
                         f"than {MAX_ASPECT} times the other)")


def _decode_smaller(image: Image.Image) -> bool:
    """Let a picture far larger than needed decode at a reduced size where its format allows it:
    a JPEG at 1/2, 1/4 or 1/8 scale (always possible), a JPEG 2000 halved up to JPEG2000_MAX_REDUCE
    times (True: its file may hold fewer levels, and then decodes only whole)."""
    largest = max(image.size)
    if largest <= 2 * WORK_SIZE:
        return False
    if image.format == "JPEG":
        scale = largest / WORK_SIZE
        image.draft(image.mode, (int(image.width / scale), int(image.height / scale)))
    elif image.format == "JPEG2000":
        image.reduce = min(int(math.log2(largest / WORK_SIZE)), JPEG2000_MAX_REDUCE)
        return True
    return False


def _upright(image: Image.Image) -> Image.Image:
    """Phone photos as displayed (EXIF orientation); an unreadable orientation leaves it as stored."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(image) or image
    except MemoryError:
        raise
    except Exception:   # any damage in the EXIF block: keep the picture as stored
        return image


# --- gray levels ------------------------------------------------------------------------------------------

def to_grayscale(image: Image.Image, name: str = "image") -> np.ndarray:
    """Gray levels (H, W) float32 in 0..1 (0 = black), at most WORK_SIZE per side.

    Colours become luminance (ITU-R 601: 0.299 R + 0.587 G + 0.114 B); transparency is composited
    onto a background chosen by `_composite`. The picture is reduced before it becomes an array,
    and converted only when its mode is not already the one needed: no second full-size copy.
    """
    from PIL import Image

    mode = image.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    with decoding(name):
        if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
            image, full_scale = _wide_to_float(image, name)
        elif has_alpha:
            image, full_scale = _as_mode(image, "RGBA"), 255.0
        elif mode in ("1", "L", "P"):
            image, full_scale = _as_mode(image, "L"), 255.0
        else:    # RGB, CMYK, YCbCr, LAB, HSV, ...
            image, full_scale = _as_mode(image, "RGB"), 255.0
        if max(image.size) > WORK_SIZE:
            scale = max(image.size) / WORK_SIZE
            size = (max(1, round(image.width / scale)), max(1, round(image.height / scale)))
            image = image.resize(size, Image.Resampling.BOX)   # area average; premultiplies alpha
        pixels = np.asarray(image, dtype=np.float32) / np.float32(full_scale)
    if pixels.ndim == 2:
        return pixels
    luminance = pixels[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)   # (H, W, 3) -> (H, W)
    if pixels.shape[2] == 4:
        return _composite(luminance, pixels[..., 3])
    return luminance


def _as_mode(image: Image.Image, mode: str) -> Image.Image:
    """The picture in `mode` (Pillow's convert copies the whole picture even when it already is)."""
    return image if image.mode == mode else image.convert(mode)


def _wide_to_float(image: Image.Image, name: str) -> tuple[Image.Image, float]:
    """16-bit, 32-bit integer and float images as mode F, with the value that means white."""
    mode = image.mode
    image = _as_mode(image, "F")
    values = np.asarray(image)
    if not np.isfinite(values).all():
        raise ImageError(f"{name}: pixel values include NaN or infinity")
    top = float(values.max(initial=0.0))
    if mode.startswith("I;16"):
        full_scale = 65535.0
    elif mode == "F" and top <= 1.0:
        full_scale = 1.0
    else:   # 32-bit integers or floats beyond 1: the smallest usual range that holds the values
        full_scale = next((s for s in (255.0, 65535.0) if top <= s), top)
    return image, full_scale


def _composite(luminance: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Flatten a picture with transparency onto the background it was meant to be seen on.

    Strokes of one colour drawn on nothing (an RGBA drawing: the opaque pixels all share the ink's
    colour) go onto the opposite of that colour: dark ink onto white, light ink onto black.
    Otherwise the opaque pixels at the edge of the transparency show what was meant to be behind
    it: the paper's own colour where the picture is paper with transparent margins, the light
    fringe of anti-aliased strokes where a GIF made its paper transparent.
    """
    opaque = alpha > 0.5
    if alpha.min() > 0.99 or not opaque.any():
        return luminance
    colours = luminance[opaque]
    # One colour: strokes drawn on nothing. Even 0.5 % of pixels in a second colour make it paper
    # with a little ink on it (a digit can cover under 3 % of its sheet).
    if quantile(colours, 0.995) - quantile(colours, 0.005) < 0.25:
        background = 0.0 if quantile(colours, 0.5) > 0.5 else 1.0
    else:
        clear = np.pad(~opaque, 1, constant_values=True)                 # beyond the edge: nothing
        next_to_clear = clear[:-2, 1:-1] | clear[2:, 1:-1] | clear[1:-1, :-2] | clear[1:-1, 2:]
        background = quantile(luminance[opaque & next_to_clear], 0.5)
    return luminance * alpha + np.float32(background) * (1 - alpha)


def quantile(values: np.ndarray, q: float) -> float:
    """The q-quantile (0..1) of the values by nearest rank.

    (np.median and np.percentile import numpy.ma on first use: 70 ms of a 0.3 s prediction.)
    """
    flat = values.ravel()
    rank = round(q * (flat.size - 1))
    return float(np.partition(flat, rank)[rank])
