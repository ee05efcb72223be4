"""Training SegRefiner: data pipelines (LR and HR), losses, the loop, checkpoints, DDP.

::

    from segrefiner.training import load_train_config, train
    result = train(load_train_config("configs/segrefiner_lr.yaml", ["checkpoint.dir=runs/lr"]))

Modules: :mod:`~segrefiner.training.config` (the recipe), :mod:`~segrefiner.training.data_lr`
and :mod:`~segrefiner.training.data_hr` (training samples), :mod:`~segrefiner.training.losses`,
:mod:`~segrefiner.training.loop`, :mod:`~segrefiner.training.state` (checkpoints, resume),
:mod:`~segrefiner.training.distributed` (torchrun), :mod:`~segrefiner.training.callbacks`
(reporting) and :mod:`~segrefiner.training.demo` (the demo model).
"""

from segrefiner.training.callbacks import Callback, HistoryCallback
from segrefiner.training.config import TrainConfig, load_train_config
from segrefiner.training.data_hr import CoarseSource, FolderCoarseSource, HRTrainingSet
from segrefiner.training.data_lr import LRTrainingSet
from segrefiner.training.loop import TrainResult, build_dataset, train
from segrefiner.training.losses import segrefiner_loss

__all__ = [
    "Callback",
    "CoarseSource",
    "FolderCoarseSource",
    "HRTrainingSet",
    "HistoryCallback",
    "LRTrainingSet",
    "TrainConfig",
    "TrainResult",
    "build_dataset",
    "load_train_config",
    "segrefiner_loss",
    "train",
]
