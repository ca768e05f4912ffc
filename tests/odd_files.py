"""Odd files made on the fly for the reader's tests: corrupt EXIF, every format, truncations.

Nothing here is stored in the repository: each test makes what it needs.
"""

from __future__ import annotations

import io
import random
import struct
import warnings

from PIL import Image, ImageOps

from tests.helpers import make_image

# Every format Pillow writes here (pillow-heif adds HEIF): name -> extension.
FORMATS = {
    "PNG": ".png",
    "GIF": ".gif",
    "TIFF": ".tif",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "JPEG": ".jpg",
    "ICO": ".ico",
    "PPM": ".ppm",
    "TGA": ".tga",
    "AVIF": ".avif",
    "JPEG2000": ".jp2",
    "HEIF": ".heic",
}


def encoded(seed: int, fmt: str) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()  # so Pillow can write HEIF too
    buf = io.BytesIO()
    make_image(seed).save(buf, format=fmt)
    return buf.getvalue()


def jpeg_with_exif(seed: int) -> tuple[bytes, int, int]:
    """A JPEG with an EXIF block (orientation, make, model) and that block's span."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Camera"
    exif[0x0110] = "Model"
    buf = io.BytesIO()
    make_image(seed).save(buf, "JPEG", exif=exif.tobytes())
    data = buf.getvalue()
    start = data.index(b"Exif\x00\x00")
    end = start + struct.unpack(">H", data[start - 2 : start])[0]
    return data, start + 6, end - 2


def mutate_exif(data: bytes, start: int, end: int, seed: int) -> bytes:
    """1 to 4 random bytes of the EXIF block changed."""
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(start, end)] = rng.randrange(256)
    return bytes(out)


def exif_transpose_raises(data: bytes) -> bool:
    """True if Pillow raises something other than OSError, ValueError or SyntaxError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(io.BytesIO(data)) as im:
                ImageOps.exif_transpose(im).convert("RGB")
        except (OSError, ValueError, SyntaxError):
            return False
        except Exception:  # what we are looking for
            return True
    return False


def exif_breakers(count: int, tries: int = 5000) -> list[bytes]:
    """JPEGs whose mutated EXIF makes Pillow raise outside its usual three types (found
    by fuzzing now, against the Pillow installed: about 1 in 200 mutations)."""
    data, start, end = jpeg_with_exif(1)
    found: list[bytes] = []
    for seed in range(tries):
        candidate = mutate_exif(data, start, end, seed)
        if exif_transpose_raises(candidate):
            found.append(candidate)
            if len(found) == count:
                break
    assert found, f"no EXIF mutation in {tries} made Pillow raise: has Pillow changed?"
    return found
