"""Task cache keys made from content.

A flow computes one *content key* per stage run (the stage's fingerprint,
:meth:`flows.tasks.StageTasks.key`: input file hashes, the checkpoint hash, the config). Tasks
receive it as their ``content_key`` parameter; :func:`keyed` turns it into a Prefect cache key together with the task name and the
other parameters named.

Where a task's product lives on disk (a refined file, a shard's masks) the key is only given
while that product is there (``exists``): a deleted output is made again instead of being
"found" in the cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from pipelines.fingerprint import plain

__all__ = ["keyed"]


def keyed(
    *names: str, exists: Callable[[dict[str, Any]], bool] | None = None
) -> Callable[[Any, dict[str, Any]], str | None]:
    """A Prefect ``cache_key_fn``: task name + ``content_key`` + the parameters ``names``.

    ``exists(parameters)`` (optional) must hold for the key to be given at all.
    """

    def cache_key(context: Any, parameters: dict[str, Any]) -> str | None:
        if exists is not None and not exists(parameters):
            return None
        parts = {
            "task": context.task.name,
            "content": parameters["content_key"],
            **{name: plain(parameters.get(name)) for name in names},
        }
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    return cache_key
