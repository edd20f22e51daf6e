"""Which adapter a run keeps with `keep: best`: the one with the lowest held-out DPO loss seen (early stopping)."""

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from trainer.objectives import LN2

WEIGHTS_FILE = "best_adapter.safetensors"
RECORD_FILE = "best.json"


@dataclass
class BestAdapter:
    """The held-out loss to beat, the step that reached it, and the adapter's weights then (on the CPU).

    It starts as the untrained adapter, whose policy equals the reference (held-out loss exactly ln 2): a run
    whose labels teach nothing that carries over to held-out pairs keeps that, a child equal to its parent.
    """

    step: int
    loss: float
    weights: dict[str, torch.Tensor]

    @classmethod
    def untrained(cls, weights: dict[str, torch.Tensor]) -> "BestAdapter":
        return cls(step=0, loss=LN2, weights=_cpu_copy(weights))

    def offer(self, *, step: int, loss: float, weights: dict[str, torch.Tensor]) -> bool:
        """Keep these weights if their held-out loss is lower; says whether it did."""
        if not loss < self.loss:
            return False
        self.step, self.loss, self.weights = step, loss, _cpu_copy(weights)
        return True

    def save(self, folder: Path) -> None:
        """Into a training state's folder, so that a resumed run goes on with the same best."""
        save_file(self.weights, folder / WEIGHTS_FILE)
        (folder / RECORD_FILE).write_text(json.dumps({"step": self.step, "loss": self.loss}))

    @classmethod
    def load(cls, folder: Path) -> "BestAdapter | None":
        if not (folder / RECORD_FILE).exists():
            return None
        record = json.loads((folder / RECORD_FILE).read_text())
        return cls(step=record["step"], loss=record["loss"], weights=load_file(folder / WEIGHTS_FILE))


def _cpu_copy(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in weights.items()}
