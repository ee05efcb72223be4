from __future__ import annotations

import numpy as np
import pytest

from segrefiner import rle
from segrefiner.errors import InputError


def test_round_trip_and_area() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((3, 17, 23)) > 0.6
    encoded = rle.encode_many(masks)
    assert all(isinstance(e["counts"], str) and e["size"] == [17, 23] for e in encoded)
    for mask, enc in zip(masks, encoded, strict=True):
        assert np.array_equal(rle.decode(enc, 17, 23), mask)
        assert rle.area(enc, 17, 23) == mask.sum()
    assert rle.encode(masks[0]) == encoded[0]


def test_uncompressed_and_polygons() -> None:
    assert rle.decode({"size": [2, 3], "counts": [1, 2, 3]}, 2, 3).sum() == 2
    poly = rle.decode([[1.0, 1.0, 8.0, 1.0, 8.0, 6.0, 1.0, 6.0]], 10, 10)
    assert poly[3, 4] and not poly[8, 8]


@pytest.mark.parametrize(
    ("seg", "match"),
    [
        ({"size": [4, 4], "counts": "garbage"}, "malformed RLE"),
        ({"size": [4, 4], "counts": "é"}, "not ASCII"),
        ({"size": [5, 4], "counts": "04"}, "differs from the image size"),
        ({"size": ["4", 4], "counts": "04"}, "two integers"),
        ({"size": [4, 4], "counts": [1, 2]}, "counts sum to 3"),
        ({"counts": "04"}, "needs 'size'"),
        ([[1, 2, 3]], "malformed polygon"),
        ([[1, 2, "a", 4, 5, 6]], "malformed polygon"),
        ([[1, 2, float("nan"), 4, 5, 6]], "malformed polygon"),
        ("oops", "unsupported segmentation"),
    ],
)
def test_malformed_inputs_name_the_item(seg, match: str) -> None:
    with pytest.raises(InputError, match=match) as err:
        rle.decode(seg, 4, 4, item="results.json[7]")
    assert str(err.value).startswith("results.json[7]")
