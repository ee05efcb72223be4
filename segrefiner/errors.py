"""Errors the library raises for bad input, each naming the item and the problem."""

from __future__ import annotations


class SegRefinerError(Exception):
    """Base class for every error this project raises on purpose."""


class InputError(SegRefinerError, ValueError):
    """Bad user input: unreadable file, wrong size, malformed JSON/RLE, path outside the root."""


class CheckpointError(SegRefinerError, ValueError):
    """A file that is not a usable checkpoint, or weights that do not fit the model."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint argument that names neither an existing file nor a preset."""


class TrainingError(SegRefinerError, RuntimeError):
    """Training cannot go on: e.g. a non-finite loss or gradient (nothing is saved from it)."""
