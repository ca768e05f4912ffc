"""schemathesis hooks: how to make the images the upload fields declare (``image/*``).

The multipart schemas say each uploaded part is an image (``encoding.contentType``);
a fuzzer that sends random bytes there tests nothing but our 400. These give it
real PNG and JPEG files, distinct per example.
"""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

from tests.helpers import image_bytes

SEEDS = st.integers(min_value=0, max_value=10_000)
schemathesis.openapi.media_type("image/png", SEEDS.map(lambda seed: image_bytes(seed, "PNG")))
schemathesis.openapi.media_type("image/jpeg", SEEDS.map(lambda seed: image_bytes(seed, "JPEG")))
