"""Fixtures shared by the CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from segrefiner.io import write_mask
from tests.conftest import blob_mask


@pytest.fixture
def pair(tmp_path: Path, photo) -> tuple[Path, Path]:
    image = tmp_path / "astronaut.jpg"
    Image.fromarray(photo).save(image, quality=92)
    mask = tmp_path / "astronaut.png"
    write_mask(mask, blob_mask(photo.shape[:2], (200, 190), 90))
    return image, mask
