"""Weight averaging of the rounds' models: the final model of a recipe with ``average_rounds=True``.

The rounds of a run are fine-tuned from one base model (continued rounds: one trajectory), so their weights stay
in one basin and their uniform average is a model of its own (checkpoint averaging, as in SWA and model soups,
Wortsman et al. 2022). One round of a few optimiser steps moves by its seed alone; the average does not depend on
a noisy choice of round (BENCHMARKS.md, "The final model").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from sentence_transformers import SentenceTransformer


def average_models(models: Sequence[SentenceTransformer]) -> SentenceTransformer:
    """The first model, its floating-point weights replaced by the mean of ``models``' (same architecture);
    integer buffers (e.g. position ids) are the first model's."""
    if not models:
        raise ValueError("average_models needs at least one model")
    first = models[0]
    states = [m.state_dict() for m in models]
    keys = list(states[0])
    for i, state in enumerate(states[1:], start=1):
        if list(state) != keys or any(state[k].shape != states[0][k].shape for k in keys):
            raise ValueError(f"model {i} does not have the first model's architecture: they cannot be averaged")
    averaged = {}
    with torch.no_grad():
        for key in keys:
            tensor = states[0][key]
            if tensor.is_floating_point():
                # Summed in float32 (or wider), whatever the weights' own dtype, then cast back.
                total = sum(s[key].to(torch.promote_types(tensor.dtype, torch.float32)) for s in states)
                averaged[key] = (total / len(states)).to(tensor.dtype)
            else:
                averaged[key] = tensor
    first.load_state_dict(averaged)
    return first
