"""Loading and saving models.

One entry point, :func:`load_model`, accepts:

- a preset name (``"official"``, ``"small"``, ``"tiny"``): a randomly initialised network;
- an official released ``.pth`` file as it is: a bare state dict with ``denoise_model.*``
  tensors plus the two frozen ``loss_texture.sobel.*`` kernels (accepted and ignored);
- wrappers ``{"state_dict": ...}`` and ``module.`` prefixes (DDP);
- this project's self-describing checkpoints (:func:`save_checkpoint`): format tag, model
  config, weights, library version and free-form metadata.

Files are always read with ``torch.load(..., weights_only=True)`` and matched strictly.

Shipped models: :func:`default_checkpoint` gives the model this project ships for each
refinement path, ``"lr"`` (instances, ``checkpoints/segrefiner_lr_real.pt``) and ``"hr"``
(semantic masks, ``checkpoints/segrefiner_hr_real.pt``), from one registry,
:data:`DEFAULT_CHECKPOINTS`. The folder is the repository's ``checkpoints/``, or the one named by
the environment variable ``SEGREFINER_CHECKPOINTS``. A kind whose file is not there (not shipped
yet, or not installed) raises :class:`CheckpointError` saying what to pass instead.

What a checkpoint argument names is decided in one place, :func:`resolve_checkpoint`: the
shipped default of a path, a preset, or a file with its content hash (cached by path, size and
mtime). :func:`load_for_inference` turns that into the network, its saved inference settings
and its refinement-score calibrations. The model registry (``models:/name@alias``) lives in the
flows layer, which resolves a registry URI to a file and hands that file to this resolver.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from segrefiner import __version__
from segrefiner.device import resolve_device
from segrefiner.errors import CheckpointError, CheckpointNotFoundError, InputError
from segrefiner.io import atomic_path, file_sha256
from segrefiner.model import PRESET_SEED, PRESETS, DenoiseUNet, UNetConfig, build_unet

if TYPE_CHECKING:
    from segrefiner.inference.config import InferenceConfig
    from segrefiner.inference.score import ScoreCalibration

FORMAT = "segrefiner"
FORMAT_VERSION = 1
OFFICIAL_PREFIX = "denoise_model."
IGNORED_PREFIXES = ("loss_texture.",)  # frozen Sobel kernels of the official training loss
SOBEL_X = [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]
SOBEL_Y = [[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]]

# The shipped model of each refinement path, as file names inside the checkpoints folder.
DEFAULT_CHECKPOINTS: dict[str, str] = {"lr": "segrefiner_lr_real.pt", "hr": "segrefiner_hr_real.pt"}
# The official release of each path: what to pass while no shipped model exists.
OFFICIAL_CHECKPOINTS: dict[str, str] = {
    "lr": "segrefiner_lr_latest.pth",
    "hr": "segrefiner_hr_latest.pth",
}
CHECKPOINTS_ENV = "SEGREFINER_CHECKPOINTS"
REPO_CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


def checkpoints_dir() -> Path:
    """The folder of the shipped models: ``$SEGREFINER_CHECKPOINTS`` when set (and not empty),
    else the repository's ``checkpoints/``."""
    folder = os.environ.get(CHECKPOINTS_ENV, "").strip()
    return Path(folder).expanduser() if folder else REPO_CHECKPOINTS


def default_checkpoint_path(path_kind: Literal["lr", "hr"]) -> Path:
    """Where the shipped model of ``path_kind`` lives, whether or not the file is there."""
    if path_kind not in DEFAULT_CHECKPOINTS:
        raise InputError(
            f"{path_kind!r}: unknown refinement path (known: {', '.join(DEFAULT_CHECKPOINTS)})"
        )
    return checkpoints_dir() / DEFAULT_CHECKPOINTS[path_kind]


def default_checkpoint(path_kind: Literal["lr", "hr"]) -> Path:
    """The shipped model of a refinement path: ``"lr"`` (instance crops) or ``"hr"`` (semantic:
    global + local patches). Raises :class:`CheckpointError` when its file is missing, naming
    the file and what to pass instead; an unknown kind raises :class:`InputError`."""
    path = default_checkpoint_path(path_kind)
    if not path.is_file():
        where = f" (${CHECKPOINTS_ENV})" if os.environ.get(CHECKPOINTS_ENV, "").strip() else ""
        raise CheckpointError(
            f"{path}{where}: file not found; no shipped {path_kind.upper()} model exists yet "
            f"(or it was not installed). Pass a checkpoint instead (--checkpoint PATH on the "
            f"command line), e.g. the released official {OFFICIAL_CHECKPOINTS[path_kind]}"
        )
    return path


@dataclass(frozen=True)
class ModelSource:
    """What a checkpoint argument names (:func:`resolve_checkpoint`).

    ``kind``: ``"preset"`` (a network with fixed random weights) or ``"file"``; ``path``: the
    preset's name or the file's absolute path; ``ident``: ``"preset:<name>"`` or
    ``"sha256:<hex>"`` of the file's bytes, the identity run fingerprints and caches use;
    ``default``: it is the shipped model of its refinement path.
    """

    kind: Literal["preset", "file"]
    path: str
    ident: str
    default: bool = False

    @property
    def sha256(self) -> str | None:
        """The file's hex SHA-256 (``None`` for a preset)."""
        return self.ident.removeprefix("sha256:") if self.kind == "file" else None


def is_preset(spec: object) -> bool:
    """``spec`` is a preset name and no file of that name exists here (a file wins)."""
    return isinstance(spec, str) and spec in PRESETS and not Path(spec).exists()


def resolve_checkpoint(
    spec: str | os.PathLike | ModelSource | None,
    path_kind: Literal["lr", "hr"] | None = None,
) -> ModelSource:
    """The one place that decides what a checkpoint argument names.

    ``None``: the shipped model of ``path_kind`` (:func:`default_checkpoint`; it raises
    :class:`CheckpointError` when that file is missing). A preset name for which no file of
    that name exists: the preset. Anything else: a file, resolved to an absolute path, with
    its SHA-256 (cached per process by path, size and mtime). A missing file raises
    :class:`~segrefiner.errors.CheckpointNotFoundError` (also a ``FileNotFoundError``) naming
    it and the presets. A :class:`ModelSource` is returned as it is.
    """
    if isinstance(spec, ModelSource):
        return spec
    default = spec is None
    if spec is None:
        if path_kind is None:
            raise InputError(
                "resolve_checkpoint: no checkpoint given and no path kind for a default"
            )
        spec = default_checkpoint(path_kind)
    elif not isinstance(spec, str | os.PathLike):
        raise InputError(
            f"expected a checkpoint path or a preset name ({', '.join(PRESETS)}), got {spec!r}"
        )
    if is_preset(spec):
        return ModelSource("preset", str(spec), f"preset:{spec}")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"{spec}: checkpoint file not found (nor a preset: {sorted(PRESETS)})"
        )
    path = path.resolve()
    return ModelSource("file", str(path), f"sha256:{file_sha256(path)}", default=default)


@dataclass(frozen=True)
class LoadedModel:
    """A network ready for inference with what its checkpoint says about running it."""

    model: DenoiseUNet
    inference: InferenceConfig
    calibrations: dict[str, ScoreCalibration] = field(repr=False)
    source: ModelSource


def load_for_inference(
    spec: str | os.PathLike | ModelSource | None,
    path_kind: Literal["lr", "hr"] | None = None,
) -> LoadedModel:
    """Resolve ``spec`` (:func:`resolve_checkpoint`) and load it on the CPU in eval mode:
    the network, its saved inference settings (``meta["inference"]``, else the official
    defaults) and its score calibration per path ("instance", "semantic"; the built-in
    default where it carries none). Presets are built from :data:`PRESET_SEED`."""
    from segrefiner.inference.config import InferenceConfig
    from segrefiner.inference.score import calibration_from_meta

    source = resolve_checkpoint(spec, path_kind)
    if source.kind == "preset":
        model, meta = build_unet(source.path, seed=PRESET_SEED), {}
    else:
        model, meta = load_checkpoint(source.path)
    saved = meta.get("inference")
    inference = InferenceConfig.from_dict(saved) if saved else InferenceConfig()
    calibrations = {mode: calibration_from_meta(meta, mode) for mode in ("instance", "semantic")}
    return LoadedModel(model.eval(), inference, calibrations, source)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint file safely (``weights_only=True``) and return it as a dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types on garbage (KeyError, EOFError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({first})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: not a checkpoint (top level is {type(obj).__name__})")
    return dict(obj)


def extract_state_dict(
    obj: Mapping[str, Any], source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Network weights of any accepted format, with names as in :class:`DenoiseUNet`."""
    if obj.get("format") == FORMAT:
        state = obj.get("state_dict")
    elif "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        state = obj["state_dict"]
    else:
        state = obj
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{source}: no weights found")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: entry {key!r} is not a tensor (not a state dict?)")
        name = key.removeprefix("module.")
        if name.startswith(IGNORED_PREFIXES):
            continue
        out[name.removeprefix(OFFICIAL_PREFIX)] = value
    return out


def load_weights(
    model: DenoiseUNet, state: Mapping[str, torch.Tensor], source: str, *, assign: bool = False
) -> None:
    """Copy ``state`` into ``model`` strictly; the error lists every mismatch.

    ``assign``: ``model`` was built on the meta device (placeholders, no memory, no random
    initialisation): its tensors become ``state``'s, cast to the model's dtypes (a file stored
    in half precision loads as float32)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_preview(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_preview(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches: {_preview(shapes)}")
        raise CheckpointError(f"{source}: weights do not fit the model; " + "; ".join(parts))
    check_finite(state, source)
    if assign:
        state = {k: v.to(dtype=expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=assign)


def check_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    """:class:`CheckpointError` naming the first tensors holding NaN or infinity."""
    bad = [
        k
        for k, v in state.items()
        if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if bad:
        raise CheckpointError(
            f"{source}: non-finite weights (NaN or infinity) in {len(bad)} tensors: "
            f"{_preview(bad)}; the file is not a usable model"
        )


def _preview(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


def infer_config(state: Mapping[str, torch.Tensor]) -> UNetConfig:
    """The preset that fits ``state`` (official files carry no config): the one sharing the
    most (name, shape) pairs, so a damaged file is reported against the network it was meant
    for."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}

    def agreement(item: tuple[str, UNetConfig]) -> int:
        model_shapes = _preset_shapes(*item)
        return sum(model_shapes.get(k) == shape for k, shape in shapes.items())

    return max(PRESETS.items(), key=agreement)[1]


_SHAPE_CACHE: dict[str, dict[str, tuple[int, ...]]] = {}


def _preset_shapes(name: str, config: UNetConfig) -> dict[str, tuple[int, ...]]:
    if name not in _SHAPE_CACHE:
        with torch.device("meta"):
            model = DenoiseUNet(config)
        _SHAPE_CACHE[name] = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return _SHAPE_CACHE[name]


def load_checkpoint(path: str | os.PathLike) -> tuple[DenoiseUNet, dict[str, Any]]:
    """Load a checkpoint file into a CPU model in eval mode; returns ``(model, metadata)``.

    ``metadata`` holds ``format`` (``"segrefiner"`` or ``"official"``), ``preset``/``config``
    and, for this project's files, the saved ``meta`` dict (e.g. training step, inference
    settings).
    """
    obj = read_checkpoint(path)
    state = extract_state_dict(obj, str(path))
    if obj.get("format") == FORMAT:
        version = obj.get("format_version")
        if version != FORMAT_VERSION:
            raise CheckpointError(f"{path}: unsupported checkpoint format version {version!r}")
        config = UNetConfig.from_dict(dict(obj.get("model_config", {})))
        meta = {
            "format": FORMAT,
            "preset": obj.get("preset"),
            "library_version": obj.get("library_version"),
            **dict(obj.get("meta") or {}),
        }
    else:
        config = infer_config(state)
        meta = {"format": "official", "preset": _preset_name(config)}
    with torch.device("meta"):  # every weight comes from the file: no random initialisation
        model = DenoiseUNet(config)
    load_weights(model, state, str(path), assign=True)
    meta["config"] = config
    return model.eval(), meta


def _preset_name(config: UNetConfig) -> str | None:
    return next((name for name, cfg in PRESETS.items() if cfg == config), None)


def load_model(
    path_or_preset: str | os.PathLike, device: str | torch.device = "cpu"
) -> DenoiseUNet:
    """A ready-to-run network in eval mode on ``device``.

    ``path_or_preset``: a checkpoint file (official or this project's) or a preset name
    (randomly initialised; for tests and benchmarks). The model's forward is
    ``(x: float (B, 4, H, W), t: long (B,)) -> logits (B, 1, H, W)``.
    """
    if not isinstance(path_or_preset, str | os.PathLike):
        raise InputError(
            f"load_model: expected a checkpoint path or a preset name "
            f"({', '.join(PRESETS)}), got {path_or_preset!r}"
        )
    resolve_device(device)  # before any loading: a bad device is named first
    return load_for_inference(path_or_preset).model.to(resolve_device(device))


def save_checkpoint(
    path: str | os.PathLike,
    model: DenoiseUNet,
    meta: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write this project's self-describing checkpoint atomically.

    ``meta`` (JSON-like: str/int/float/bool/list/dict) travels with the weights and comes back
    from :func:`load_checkpoint`; ``extra`` adds top-level entries (e.g. optimizer state for
    resuming training), which must also load with ``weights_only=True``.
    """
    module = getattr(model, "module", model)  # unwrap DDP
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    check_finite(state, f"{path} (not written)")
    obj: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "preset": _preset_name(module.config),
        "model_config": module.config.to_dict(),
        "state_dict": state,
        "meta": dict(meta or {}),
    }
    if extra:
        clash = set(extra) & set(obj)
        if clash:
            raise ValueError(f"extra entries clash with checkpoint fields: {sorted(clash)}")
        obj.update(extra)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def export_official(path: str | os.PathLike, model: DenoiseUNet) -> None:
    """Write the weights in the official released format (a bare state dict with the
    ``denoise_model.`` prefix and the two frozen Sobel kernels), loadable by the official code
    with ``strict=True``."""
    module = getattr(model, "module", model)
    state: dict[str, torch.Tensor] = {
        OFFICIAL_PREFIX + k: v.detach().cpu().float() for k, v in module.state_dict().items()
    }
    check_finite(state, f"{path} (not written)")
    state["loss_texture.sobel.conv_x.weight"] = torch.tensor(SOBEL_X).div(4.0).view(1, 1, 3, 3)
    state["loss_texture.sobel.conv_y.weight"] = torch.tensor(SOBEL_Y).div(4.0).view(1, 1, 3, 3)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


_LOADED_KEYS = ("format", "preset", "library_version", "config")  # added by load_checkpoint


def _saved_meta(meta: Mapping[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """What a file saved in its ``meta``, from :func:`load_checkpoint`'s metadata (less the
    entries it adds and ``drop``)."""
    return {k: v for k, v in meta.items() if k not in (*_LOADED_KEYS, *drop)}


def save_with_meta(
    source: str | os.PathLike, path: str | os.PathLike, updates: Mapping[str, Any]
) -> None:
    """Write ``source``'s weights to ``path`` (this project's format) with its saved ``meta``
    updated by ``updates`` (e.g. a score calibration). An official checkpoint becomes a file
    of this project's format with the same weights."""
    model, meta = load_checkpoint(source)
    save_checkpoint(path, model, {**_saved_meta(meta), **dict(updates)})


def save_with_calibration(
    source: str | os.PathLike, path: str | os.PathLike, calibration: Any
) -> None:
    """Write ``source`` to ``path`` carrying ``calibration`` (a
    :class:`~segrefiner.inference.score.ScoreCalibration`) as its score calibration of that
    mode, next to the calibrations of other modes it already had."""
    saved = read_checkpoint(source).get("meta") or {}
    calibrations = {
        **(saved.get("score_calibration") or {}),
        calibration.mode: calibration.as_dict(),
    }
    save_with_meta(source, path, {"score_calibration": calibrations})


def interpolate_checkpoints(
    start: str | os.PathLike,
    end: str | os.PathLike,
    alpha: float,
    path: str | os.PathLike,
    updates: Mapping[str, Any] | None = None,
) -> None:
    """Write ``(1 - alpha) * start + alpha * end``, weight by weight, to ``path``.

    For a fine-tuned model (``end``) and the weights it was fine-tuned from (``start``) this
    is weight-space ensembling ("WiSE-FT", Wortsman et al., CVPR 2022): an ``alpha`` between 0
    and 1 trades what the fine-tune learned against what the starting model kept. Both files
    must hold the same architecture. The result carries ``end``'s saved ``meta`` (less its
    score calibrations, which were fitted to ``end``'s weights, not the blend's) plus an
    ``"interpolation"`` record (both files' names and sha256, ``alpha``) and ``updates``.
    """
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"interpolate_checkpoints: alpha must be in [0, 1], got {alpha}")
    model_a, _ = load_checkpoint(start)
    model_b, meta = load_checkpoint(end)
    if model_a.config != model_b.config:
        raise CheckpointError(
            f"{start} and {end} hold different architectures; only the same network "
            "can be interpolated"
        )
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    mixed = {
        k: torch.lerp(state_a[k].float(), b.float(), alpha).to(b.dtype)
        if b.is_floating_point() else b  # integer buffers (counters) are not blended
        for k, b in state_b.items()
    }  # fmt: skip
    load_weights(model_b, mixed, f"{start} x {end}")
    saved = _saved_meta(meta, drop=("score_calibration",))
    record = {
        "start": Path(start).name,
        "start_sha256": file_sha256(start),
        "end": Path(end).name,
        "end_sha256": file_sha256(end),
        "alpha": alpha,
    }
    save_checkpoint(path, model_b, {**saved, "interpolation": record, **dict(updates or {})})
