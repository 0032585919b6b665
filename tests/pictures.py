"""Test pictures shared by the picture tests and the CLI tests: MNIST digits redrawn as users' pictures,
and files that are not pictures at all."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from mlknobs.vision.images import MAX_PIXELS

# --- drawing MNIST digits the way users' pictures look ---------------------------------------------

def enlarged(digit: np.ndarray, rng: np.random.Generator, low: float = 2.5, high: float = 5.0) -> np.ndarray:
    """Ink coverage 0..1 (H, W): the 28×28 digit scaled up and put off-centre on a bigger canvas."""
    side = round(28 * rng.uniform(low, high))
    ink = Image.fromarray(digit.reshape(28, 28)).resize((side, side), Image.Resampling.BICUBIC)
    ink = np.clip(np.asarray(ink, np.float32) / 255, 0, 1)
    height, width = (round(side * rng.uniform(1.2, 2.0)) for _ in range(2))
    canvas = np.zeros((height, width), np.float32)
    top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    canvas[top:top + side, left:left + side] = ink
    return canvas


def u8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)


def on_paper(ink: np.ndarray, paper: float, pen: float) -> np.ndarray:
    return paper + (pen - paper) * ink


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def dark_on_light_png(digit, rng):
    return encode(Image.fromarray(u8(on_paper(enlarged(digit, rng), 0.95, 0.05))), "PNG")


def jpeg(digit, rng):
    return encode(Image.fromarray(u8(on_paper(enlarged(digit, rng), 0.93, 0.1))), "JPEG", quality=50)


def rgba_transparent(digit, rng):
    ink = enlarged(digit, rng)
    rgba = np.zeros(ink.shape + (4,), np.uint8)
    rgba[..., :3] = (10, 10, 60)               # navy pen; alpha alone draws the digit
    rgba[..., 3] = u8(ink)
    return encode(Image.fromarray(rgba, "RGBA"), "PNG")


def palette(digit, rng):
    ink = enlarged(digit, rng)
    rgb = np.stack([on_paper(ink, 0.95, 0.1), on_paper(ink, 0.9, 0.1), on_paper(ink, 0.8, 0.4)], axis=-1)
    return encode(Image.fromarray(u8(rgb)).quantize(colors=8), "GIF")


def sixteen_bit(digit, rng):
    levels = np.rint(on_paper(enlarged(digit, rng), 0.1, 0.9) * 65535).astype(np.uint16)
    return encode(Image.fromarray(levels), "PNG")


def noisy(digit, rng):
    ink = enlarged(digit, rng)
    gray = on_paper(ink, 0.85, 0.15) + rng.normal(0, 0.06, ink.shape)
    gray[rng.random(ink.shape) < 0.001] = 0.1     # pepper specks on the paper
    return encode(Image.fromarray(u8(gray)).filter(ImageFilter.GaussianBlur(0.7)), "JPEG", quality=80)


STYLES = [dark_on_light_png, jpeg, rgba_transparent, palette, sixteen_bit, noisy]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims the given size: a valid header and a tiny, truncated pixel stream."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def bad_inputs(folder: Path) -> dict[str, str]:
    """File name -> a word the error message must contain."""
    folder.mkdir(exist_ok=True)
    good = encode(Image.fromarray(np.full((40, 40), 255, np.uint8)), "PNG")
    noise = np.random.default_rng(0).integers(0, 255, (200, 200), np.uint8)
    (folder / "folder.png").mkdir(exist_ok=True)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_text("this is not a picture\n")
    png_bytes = encode(Image.fromarray(noise), "PNG")
    (folder / "truncated.png").write_bytes(png_bytes[:len(png_bytes) // 2])
    jpeg_bytes = encode(Image.fromarray(noise), "JPEG")
    (folder / "truncated.jpg").write_bytes(jpeg_bytes[:len(jpeg_bytes) // 2])
    (folder / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    over = int(np.sqrt(MAX_PIXELS)) + 100
    (folder / "huge.png").write_bytes(png_header_only(over, over))
    (folder / "blank.png").write_bytes(good)
    (folder / "faint.png").write_bytes(encode(Image.fromarray(
        np.where(np.eye(60, dtype=bool), 250, 255).astype(np.uint8)), "PNG"))
    return {"missing.png": "no such file", "folder.png": "directory", "empty.png": "empty",
            "notes.png": "not an image", "truncated.png": "truncated", "truncated.jpg": "truncated",
            "bomb.png": "large", "huge.png": "large", "blank.png": "no ink", "faint.png": "no ink"}


# --- pictures Pillow opens but cannot decode, and shapes that cost more than their pixels ------------

def _dds(fourcc: bytes = b"ZZZZ", flags: int = 0x4, bit_count: int = 0, masks=(0, 0, 0, 0), dx10: bytes = b"") -> bytes:
    """A 64×64 DDS file: its header (pixel format `flags`, `fourcc`, `bit_count`, masks) and zeros."""
    header = struct.pack("<7I", 124, 0x1007, 64, 64, 64 * 4, 0, 1) + bytes(44)
    pixel_format = struct.pack("<2I4sI4I", 32, flags, fourcc, bit_count, *masks)
    return b"DDS " + header + pixel_format + struct.pack("<5I", 0x1000, 0, 0, 0, 0) + dx10 + bytes(64 * 64 * 4)


def _ftex(texture_format: int) -> bytes:
    """A 64×64 FTEX (Independence War 2) texture in a format its decoder lacks."""
    return (b"FTEX" + struct.pack("<7i", 0, 64, 64, 1, 1, texture_format, 1) + struct.pack("<i", 100)
            + bytes(200))


UNDECODABLE = {   # name -> the bytes of a file Pillow recognises and then fails on, each in its own way
    "unknown-fourcc.dds": _dds(b"ZZZZ"),                                   # NotImplementedError
    "unknown-dxgi.dds": _dds(b"DX10", dx10=struct.pack("<5I", 999, 3, 0, 1, 0)),   # NotImplementedError
    "odd-luminance.dds": _dds(b"\0\0\0\0", flags=0x20000, bit_count=16, masks=(0xFFFF, 0, 0, 0)),  # OSError
    "unknown-format.ftex": _ftex(7),                                       # ValueError
    "no-ghostscript.eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n" + b"\n" * 50,  # OSError
    "video.mpg": b"\x00\x00\x01\xb3\x04\x00\x40\x00" + bytes(100),         # OSError: cannot load
    "stub.grib": b"GRIB\0\0\0\x01" + bytes(100),                           # a stub of size 0×0
}


def png_of_zeros(width: int, height: int, color_type: int = 0, palette: bytes = b"") -> bytes:
    """A complete PNG of `width`×`height` zero pixels (gray, or 2: RGB, 3: palette, 6: RGBA), compressed
    from a stream of rows so that even 64,000,000 rows cost only a moment to write."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = bytes(1 + width * {0: 1, 2: 3, 3: 1, 6: 4}[color_type])         # filter byte + the pixels
    rows_per_block = max(1, 2**20 // len(row))
    squeeze, parts, done = zlib.compressobj(9), [], 0
    while done < height:
        count = min(rows_per_block, height - done)
        parts.append(squeeze.compress(row * count))
        done += count
    parts.append(squeeze.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + (chunk(b"PLTE", palette) if palette else b"")
            + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))
