"""Is a body an image? Decided by decoding its header and structure, not by Content-Type.

Servers lie both ways: a CDN serves a good JPEG as text/plain, an error page
comes back as image/jpeg with a 200. ``Image.open`` identifies the format from
the bytes and ``verify()`` walks the file's structure without decoding every
pixel, so a truncated or foreign body is caught here, per URL, cheaply.
"""

from __future__ import annotations

import io

import pillow_heif
from PIL import Image

# HEIC/HEIF as the reader decodes them (registering twice is harmless).
pillow_heif.register_heif_opener()


def not_an_image(data: bytes) -> str | None:
    """None for an image Pillow can open, else the per-URL reason."""
    if not data:
        return "not an image (empty body)"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Image.DecompressionBombError:  # the reader refuses the same pictures
        return "too many pixels to decode safely"
    except Exception:  # any decoder's complaint means the same to the user
        return "not an image"
    return None
