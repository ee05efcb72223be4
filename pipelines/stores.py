"""The on-disk layout of mask stores: zarr v3 groups of full-resolution masks keyed by sample id.

One layout serves every stage that writes masks (offline HR coarse masks, refined BIG/DIS masks,
refined COCO instance masks)::

    <store>/                         root group; attrs: layout, layout_version, producer
                                     (segrefiner version), kinds, and what the stage adds
                                     (generator parameters, seed, data root, counts, complete)
      masks/<kind>/<key>             one array per (kind, sample): bool, (H, W) or (N, H, W),
                                     a single chunk holding the whole array, Blosc zstd
                                     bitshuffle; attrs: sample_id, kind and the caller's extras
      index/<column>                 1-D arrays, one entry per sample in store order:
                                     ``sample_id`` (str) plus the stage's columns
      shards/<name>                  empty group per finished writer unit; its attrs are the
                                     unit's completion record, written after all its masks

Why this shape:

* masks are ragged (every image has its own size), so one array per sample is the natural
  unit; a single chunk per array means a writer owns whole chunks and concurrent writers never
  share one (zarr loses data silently when they do), and a reader fetches a mask in two reads
  (metadata + chunk), also on object stores;
* ``key`` (:func:`mask_key`) is a file-system and URL safe slug of the sample id plus a hash, so
  ids with ``/``, ``#`` or spaces need no escaping and distinct ids never collide;
* the index is written by one process only (the driver), before and after the workers run, so it
  never races with them; readers do not need it to find a mask (the key derives from the id);
* a completion record is the last thing a unit writes, so its presence means the unit's masks
  are in place (LocalStore and object stores write each object atomically).

Masks are bool in memory and on disk: Blosc's bitshuffle turns 0/1 bytes into a packed bit
plane before zstd, which gave the best size for the speed on mask data (see
``benchmarks/coarse_masks.py``) and stays within the zarr v3 core codecs.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import zarr
from zarr.codecs import BloscCodec

import segrefiner
from segrefiner.errors import InputError

__all__ = ["LAYOUT_VERSION", "MASK_COMPRESSOR", "MaskStore", "mask_key"]

LAYOUT_VERSION = 1
# 1 MiB blocks compress masks ~10 % better than Blosc's automatic block size at equal speed.
MASK_COMPRESSOR = BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle", blocksize=1 << 20)
_SLUG_MAX = 80


def mask_key(sample_id: str) -> str:
    """The array name of a sample: ``<slug>-<12 hex digits of blake2b(sample_id)>``.

    The slug keeps ``[A-Za-z0-9._-]`` (``/`` becomes ``.``, anything else ``_``) so keys are
    readable in listings; the hash makes them unique.
    """
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id.replace("/", "."))[:_SLUG_MAX]
    # zarr reserves names starting with "__"; names of only dots are not allowed either.
    slug = slug.strip("._") or "sample"
    digest = hashlib.blake2b(sample_id.encode("utf-8"), digest_size=6).hexdigest()
    return f"{slug}-{digest}"


def _column_data(name: str, values: Sequence[Any] | np.ndarray, length: int) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind not in "UOT":
        data = values
    elif all(isinstance(v, str) for v in values):
        # Variable-length UTF-8 in zarr: paths and reasons have no useful fixed width.
        data = np.array(list(values), dtype=np.dtypes.StringDType())
    else:
        data = np.asarray(values)
    if data.ndim != 1 or data.shape[0] != length:
        raise ValueError(f"index column {name!r}: expected {length} values, got shape {data.shape}")
    return data


class MaskStore:
    """A mask store (layout in the module docstring). Open with :meth:`create` or :meth:`open`."""

    def __init__(self, group: zarr.Group, path: str) -> None:
        self._group = group
        self.path = path
        self._index_cache: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        layout: str,
        kinds: Sequence[str],
        sample_ids: Sequence[str],
        columns: Mapping[str, Sequence[Any] | np.ndarray] | None = None,
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> MaskStore:
        """Create a store for ``sample_ids`` (unique) with one mask group per kind.

        ``columns`` are index columns (one value per sample); ``attrs`` go to the root group
        beside the layout fields. An existing store at ``path`` is an error unless
        ``overwrite``.
        """
        path = os.fspath(path)
        if len(set(sample_ids)) != len(sample_ids):
            raise InputError(f"{path}: duplicate sample ids for the store")
        for kind in kinds:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", kind):
                raise ValueError(f"mask kind {kind!r}: use letters, digits, '_', '.', '-'")
        root_attrs = {
            "layout": layout,
            "layout_version": LAYOUT_VERSION,
            "producer": {"name": "segrefiner", "version": segrefiner.__version__},
            "kinds": list(kinds),
            "num_samples": len(sample_ids),
            **(attrs or {}),
        }
        try:
            group = zarr.create_group(path, overwrite=overwrite, attributes=root_attrs)
        except zarr.errors.ContainsGroupError as exc:
            raise InputError(f"{path}: a store already exists here") from exc
        for kind in kinds:
            group.create_group(f"masks/{kind}")
        group.create_group("shards")
        store = cls(group, path)
        store.write_column("sample_id", list(sample_ids))
        for name, values in (columns or {}).items():
            store.write_column(name, values)
        return store

    @staticmethod
    def exists(path: str | os.PathLike) -> bool:
        """Whether a zarr group (a store, or something else) exists at ``path``."""
        try:
            zarr.open_group(os.fspath(path), mode="r", zarr_format=3)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            return False
        return True

    @classmethod
    def open(cls, path: str | os.PathLike, mode: Literal["r", "r+"] = "r") -> MaskStore:
        """Open an existing store (``"r"`` read only, ``"r+"`` to write masks and records)."""
        path = os.fspath(path)
        try:
            group = zarr.open_group(path, mode=mode, zarr_format=3)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
            raise InputError(f"{path}: no mask store here") from exc
        if "layout_version" not in group.attrs:
            raise InputError(f"{path}: not a mask store (no layout_version attribute)")
        if group.attrs["layout_version"] != LAYOUT_VERSION:
            raise InputError(
                f"{path}: store layout version {group.attrs['layout_version']}, "
                f"this code reads {LAYOUT_VERSION}"
            )
        return cls(group, path)

    # ------------------------------------------------------------------ attributes

    @property
    def attrs(self) -> dict[str, Any]:
        """A copy of the root attributes."""
        return dict(self._group.attrs)

    def update_attrs(self, values: Mapping[str, Any]) -> None:
        """Update root attributes. Single writer only (the driver): the root's metadata is one
        object, and concurrent updates would overwrite each other."""
        self._group.update_attributes(dict(values))

    @property
    def kinds(self) -> list[str]:
        return list(self._group.attrs["kinds"])

    # ------------------------------------------------------------------ masks

    def _mask_path(self, kind: str, sample_id: str) -> str:
        if kind not in self.kinds:
            raise InputError(f"{self.path}: unknown mask kind {kind!r} (kinds: {self.kinds})")
        return f"masks/{kind}/{mask_key(sample_id)}"

    def write_mask(
        self,
        kind: str,
        sample_id: str,
        mask: np.ndarray,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Write one mask (``(H, W)`` or ``(N, H, W)``, non-zero = foreground) as one chunk.

        Replaces an earlier mask of the same sample and kind (a re-run after an interruption).
        """
        data = np.asarray(mask)
        if data.ndim not in (2, 3) or 0 in data.shape:
            raise InputError(f"{sample_id}: a mask must be (H, W) or (N, H, W), got {data.shape}")
        if data.dtype != bool:
            data = data != 0
        zarr.create_array(
            self._group.store,
            name=self._mask_path(kind, sample_id),
            data=np.ascontiguousarray(data),
            chunks=data.shape,
            compressors=[MASK_COMPRESSOR],
            attributes={"sample_id": sample_id, "kind": kind, **(attrs or {})},
            overwrite=True,
        )

    def _mask_array(self, kind: str, sample_id: str) -> zarr.Array:
        path = self._mask_path(kind, sample_id)
        try:
            return zarr.open_array(self._group.store, path=path, mode="r", zarr_format=3)
        except (FileNotFoundError, zarr.errors.ArrayNotFoundError) as exc:
            raise InputError(f"{self.path}: no {kind} mask for sample {sample_id!r}") from exc

    def read_mask(self, kind: str, sample_id: str) -> np.ndarray:
        """The stored mask of a sample, ``bool``, exactly as written."""
        return self._mask_array(kind, sample_id)[...]

    def mask_attrs(self, kind: str, sample_id: str) -> dict[str, Any]:
        """The attributes stored with a sample's mask."""
        return dict(self._mask_array(kind, sample_id).attrs)

    def has_mask(self, kind: str, sample_id: str) -> bool:
        return self._group.get(self._mask_path(kind, sample_id)) is not None

    def delete_mask(self, kind: str, sample_id: str) -> None:
        """Remove a sample's mask if present (a re-run clearing a failed sample's leftovers)."""
        path = self._mask_path(kind, sample_id)
        if self._group.get(path) is not None:
            del self._group[path]

    # ------------------------------------------------------------------ index

    @property
    def sample_ids(self) -> list[str]:
        """Sample ids in store order."""
        return [str(s) for s in self.read_column("sample_id")]

    def write_column(self, name: str, values: Sequence[Any] | np.ndarray) -> None:
        """Write (or replace) index column ``name``: one value per sample, in store order.

        Single writer only (the driver), like :meth:`update_attrs`.
        """
        length = int(self._group.attrs["num_samples"])
        data = _column_data(name, values, length)
        zarr.create_array(
            self._group.store,
            name=f"index/{name}",
            data=data,
            chunks=(max(length, 1),),
            overwrite=True,
        )
        self._index_cache.pop(name, None)

    def read_column(self, name: str) -> np.ndarray:
        if name not in self._index_cache:
            try:
                array = zarr.open_array(
                    self._group.store, path=f"index/{name}", mode="r", zarr_format=3
                )
            except (FileNotFoundError, zarr.errors.ArrayNotFoundError) as exc:
                raise InputError(f"{self.path}: no index column {name!r}") from exc
            self._index_cache[name] = array[...]
        return self._index_cache[name]

    def columns(self) -> list[str]:
        return sorted(self._group["index"].array_keys())

    # ------------------------------------------------------------------ completion records

    def mark_complete(self, unit: str, record: Mapping[str, Any]) -> None:
        """Write writer unit ``unit``'s completion record. Call only after its masks are written."""
        zarr.create_group(
            self._group.store, path=f"shards/{unit}", attributes=dict(record), overwrite=True
        )

    def completion_record(self, unit: str) -> dict[str, Any] | None:
        """The unit's completion record, or ``None`` when it has not finished."""
        node = self._group.get(f"shards/{unit}")
        return None if node is None else dict(node.attrs)

    def completed_units(self) -> list[str]:
        return sorted(self._group["shards"].group_keys())

    def clear_completion(self, unit: str) -> None:
        if self._group.get(f"shards/{unit}") is not None:
            del self._group[f"shards/{unit}"]
