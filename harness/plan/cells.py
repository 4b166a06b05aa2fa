"""The cells of a run (models x datasets x languages x seeds x protocols) and the key of each cell.

A cell's key is a hash of everything that decides its result: the model (name, plugin
version, metadata, facts, options), the dataset (name, plugin version, options, and the
fingerprint of the data it reads), the language, the seed, the protocol (name, version,
options), the training recipe and the version of the loop. Anything else (device, threads,
precision, the metrics scored) is recorded with the result but does not change the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.plan.config import TrainSettings

#: bump when the loop changes in a way that changes results (invalidates stored cells)
LOOP_VERSION = 1

#: the protocol of a cell when none is named (the study's fine-tuning)
DEFAULT_PROTOCOL = "finetune"


@dataclass(frozen=True)
class Cell:
    model: str
    dataset: str
    language: str
    seed: int
    protocol: str = DEFAULT_PROTOCOL

    def label(self) -> str:
        label = f"{self.model} / {self.dataset}:{self.language} / seed {self.seed}"
        return label if self.protocol == DEFAULT_PROTOCOL else f"{label} / {self.protocol}"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def cell_identity(
    cell: Cell,
    *,
    model_version: str,
    model_metadata: Mapping[str, Any],
    model_options: Mapping[str, Any],
    dataset_version: str,
    dataset_options: Mapping[str, Any],
    train: TrainSettings,
    model_facts: Any = None,
    protocol_version: str = "0",
    protocol_options: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything that decides the cell's result, as plain data (stored with the result).

    ``data`` is the dataset's fingerprint of what it reads (release, content digest); datasets
    without one leave it out.
    """
    model = {"version": model_version, "metadata": dict(model_metadata), "options": dict(model_options)}
    if model_facts is not None:
        model["facts"] = dataclasses.asdict(model_facts)
    identity = {
        "cell": dataclasses.asdict(cell),
        "model": model,
        "dataset": {"version": dataset_version, "options": dict(dataset_options)},
        "protocol": {"name": cell.protocol, "version": protocol_version, "options": dict(protocol_options or {})},
        "train": train.keyed() if hasattr(train, "keyed") else dataclasses.asdict(train),
        "loop_version": LOOP_VERSION,
    }
    if data is not None:
        identity["data"] = dict(data)
    return identity


def cell_key(identity: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:24]
