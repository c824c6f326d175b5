"""Lens quality per layer, and the rule that calls a lens uninformative at a layer.

A lens's rates mean something only where the lens reads the model: on real checkpoints the plain
logit lens is often blind in the middle layers (massive activations in a few residual dims make
every position decode to the same punctuation). Two measures, at the spoken words' positions,
over the full vocabulary, averaged over each word's positions and then over words (``lens.csv``
metrics, with word-type bootstrap CIs; :mod:`speech_interp.lens.metrics`):

- ``kl_to_final``: KL(model's final distribution || lens distribution) in nats, the tuned-lens
  paper's measure (0 at the last stream);
- ``top1_agreement``: share of positions whose lens top-1 is the model's own final top-1.

**Rule** (:data:`UNINFORMATIVE_RULE`, fixed 2026-12-03 before any number on real weights was
read): the lens is *uninformative* at stream ``l < L`` when its ``top1_agreement`` is no higher
than a **constant guess**'s: the same average of [the model's final top-1 is its commonest final
top-1 at these positions]. There the lens tells less about what the model will output than
ignoring the residual stream does, so its rates at that layer are not readings of the model.

:func:`kl_to_final` measures the same KL over every position of any prompts (fitting and
comparing lenses on text).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from speech_interp.core.residuals import residual_stack
from speech_interp.data.prompt import Prompt
from speech_interp.lens.lenses import Lens, prompt_ids
from speech_interp.lens.registry import as_lens

UNINFORMATIVE_RULE = (
    "uninformative at stream l < L: lens top-1 agreement with the model's final top-1 (at the "
    "spoken words' positions, averaged per word then over words) is no higher than a constant "
    "guess's (the same average of [final top-1 == the commonest final top-1 there])"
)


def constant_guess(items: np.ndarray, final_top: np.ndarray) -> float:
    """Average over words of the share of each word's positions whose final top-1 is the
    commonest final top-1 over all positions; ``items[i]`` is position i's word."""
    if not len(final_top):
        return float("nan")
    values, counts = np.unique(final_top, return_counts=True)
    hit = (final_top == values[np.argmax(counts)]).astype(np.float64)
    per_word = pd.Series(hit).groupby(items).mean()
    return float(per_word.mean())


def lens_quality(summary: pd.DataFrame, items: np.ndarray, final_top: np.ndarray) -> pd.DataFrame:
    """One row per (model, backend, lens, layer): ``kl_to_final``, ``top1_agreement``,
    ``constant_guess`` and ``informative`` (the module's rule; the last stream is the model's
    own output and always informative)."""
    rows = summary[
        summary["metric"].isin(["kl_to_final", "top1_agreement"]) & (summary["words"] == "all")
    ]
    keys = ["model", "backend", "lens", "layer"]
    table = rows.pivot_table(index=keys, columns="metric", values="value").reset_index()
    table.columns.name = None
    table["constant_guess"] = constant_guess(items, final_top)
    last = table["layer"] == table["layer"].max()
    table["informative"] = last | (table["top1_agreement"] > table["constant_guess"])
    return table[[*keys, "kl_to_final", "top1_agreement", "constant_guess", "informative"]]


def uninformative_layers(quality: pd.DataFrame) -> list[int]:
    """Layers where the lens is uninformative (:data:`UNINFORMATIVE_RULE`)."""
    return sorted(int(layer) for layer in quality.loc[~quality["informative"], "layer"])


def quality_warning(quality: pd.DataFrame, lens: str) -> str | None:
    """One plain sentence for reports when the lens is uninformative at some layer, else None."""
    bad = uninformative_layers(quality)
    if not bad:
        return None
    return (
        f"warning: the {lens} lens is uninformative at {len(bad)} of {len(quality)} layers "
        f"({_spans(bad)}): its top-1 matches the model's own output no more often than a "
        "constant guess, so its rates there do not read the model"
        + (" (try --lens tuned)" if lens == "logit" else "")
    )


def _spans(layers: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    parts, start = [], None
    for i, layer in enumerate(layers):
        if start is None:
            start = layer
        if i + 1 == len(layers) or layers[i + 1] != layer + 1:
            parts.append(f"{start}-{layer}" if layer != start else f"{layer}")
            start = None
    return ", ".join(parts)


def kl_to_final(
    lens: Lens, model, prompts: Sequence[Prompt | Tensor], *, remote: bool | str = False
) -> pd.DataFrame:
    """Mean KL(final distribution || lens distribution) per stream over all prompt positions."""
    lens = as_lens(lens, model)
    total = torch.zeros(lens.n_layers + 1, dtype=torch.float64)
    n = 0
    with torch.no_grad():
        for p in prompts:
            stack = residual_stack(model, prompt_ids(p)[None], remote=remote)[:, 0]
            final = F.log_softmax(lens.logits_at(lens.n_layers, stack[-1]), dim=-1)
            for layer in range(lens.n_layers + 1):
                logp = F.log_softmax(lens.logits_at(layer, stack[layer]), dim=-1)
                total[layer] += F.kl_div(logp, final, log_target=True, reduction="sum").double()
            n += stack.shape[1]
    if n == 0:
        raise ValueError("kl_to_final needs at least one prompt")
    return pd.DataFrame({"layer": range(lens.n_layers + 1), "kl": (total / n).numpy(), "n": n})


__all__ = [
    "kl_to_final",
    "UNINFORMATIVE_RULE",
    "constant_guess",
    "lens_quality",
    "quality_warning",
    "uninformative_layers",
]
