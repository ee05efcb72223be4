"""One reading of a ``device`` argument for the library, the pipelines and the command line."""

from __future__ import annotations

import torch

from segrefiner.errors import InputError

__all__ = ["KNOWN_DEVICES", "resolve_device"]

KNOWN_DEVICES = ("cpu", "cuda", "cuda:N")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a :class:`torch.device`; :class:`InputError` naming
    the value for anything else, for CUDA on a machine without it and for a missing card."""
    if isinstance(device, torch.device):
        resolved = device
    else:
        if not isinstance(device, str) or not device.strip():
            raise InputError(f"device {device!r}: expected one of {', '.join(KNOWN_DEVICES)}")
        try:
            resolved = torch.device(device.strip())
        except (RuntimeError, ValueError) as exc:
            raise InputError(
                f"device {device!r}: unknown; expected one of {', '.join(KNOWN_DEVICES)}"
            ) from exc
    if resolved.type not in ("cpu", "cuda"):
        raise InputError(f"device {str(resolved)!r}: not supported; use {', '.join(KNOWN_DEVICES)}")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {str(resolved)!r} requested but CUDA is not available")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise InputError(
                f"device {str(resolved)!r}: this machine has {torch.cuda.device_count()} GPU(s)"
            )
    return resolved
