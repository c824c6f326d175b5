"""Validate a lens on text, where the answer is known: does stream l decode the current token, the
next token, and how far is it from the model's own output?

The reference text is real English prose that ships with Python itself: the paragraphs of
CPython's reference-manual topics (``pydoc_data.topics``, what ``help("if")`` prints), with
code lines, grammar lines and rules dropped. :func:`split_texts` makes a fixed split (even
paragraphs to fit a lens, odd ones to validate it), so fitting and validation never share text.

:func:`text_lens_curves` measures, per lens and stream, over every position of the prompts and
the full vocabulary: ``kl_to_final`` (mean KL(final || lens), nats), ``top1_agreement`` (lens
top-1 = the model's own top-1), ``current_token`` (the input token at that position in the lens
top-k) and ``next_token`` (the following token in the top-k; positions before the last).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

from speech_interp.core.residuals import residual_stack
from speech_interp.lens.lenses import Lens
from speech_interp.lens.registry import as_lens

MIN_WORDS = 20  # paragraphs shorter than this are headings or fragments


def reference_texts() -> list[str]:
    """English prose paragraphs of CPython's reference topics, in a fixed order."""
    from pydoc_data.topics import topics

    out = []
    for name in sorted(topics):
        for para in re.split(r"\n\s*\n", topics[name]):
            lines = [
                line.strip()
                for line in para.splitlines()
                if line.strip() and not line.startswith(" ") and not set(line) <= set("*=-~^")
            ]
            text = " ".join(lines)
            if len(text.split()) >= MIN_WORDS:
                out.append(text)
    return out


def split_texts(texts: Sequence[str]) -> tuple[list[str], list[str]]:
    """(fit, validation): even-indexed and odd-indexed paragraphs."""
    return list(texts[::2]), list(texts[1::2])


def text_prompts(tokenizer, texts: Sequence[str], max_tokens: int = 128) -> list[Tensor]:
    """Token ids of each text, cut to its first ``max_tokens`` tokens (at least 2 tokens kept)."""
    if max_tokens < 2:
        raise ValueError(f"max_tokens must be >= 2, got {max_tokens}")
    prompts = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False).input_ids[:max_tokens]
        if len(ids) >= 2:
            prompts.append(torch.tensor(ids, dtype=torch.long))
    if not prompts:
        raise ValueError("no text yields at least 2 tokens")
    return prompts


def text_lens_curves(
    model,
    lenses: Mapping[str, str | Lens],
    prompts: Sequence[Int[Tensor, " pos"]],
    *,
    k: int = 5,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per (lens, layer): the module's four measures and the number of positions."""
    bound = {name: as_lens(lens, model) for name, lens in lenses.items()}
    sums: dict[tuple[str, int], dict[str, float]] = {}
    with torch.no_grad():
        for ids in tqdm(prompts, desc="text lens curves", disable=not progress):
            stack = residual_stack(model, ids[None])[:, 0].float()
            ids = ids.to(stack.device)
            for name, lens in bound.items():
                final = F.log_softmax(lens.logits_at(lens.n_layers, stack[-1]), -1)
                final_top = final.argmax(-1)
                for layer in range(lens.n_layers + 1):
                    logp = F.log_softmax(lens.logits_at(layer, stack[layer]), -1)
                    top = logp.topk(k, dim=-1).indices
                    cell = sums.setdefault((name, layer), dict.fromkeys(_MEASURES, 0.0))
                    kl = F.kl_div(logp, final, log_target=True, reduction="none").sum(-1)
                    cell["kl_to_final"] += float(kl.sum())
                    cell["top1_agreement"] += float((top[:, 0] == final_top).sum())
                    cell["current_token"] += float((top == ids[:, None]).any(-1).sum())
                    cell["next_token"] += float((top[:-1] == ids[1:, None]).any(-1).sum())
                    cell["n"] += ids.numel()
                    cell["n_next"] += ids.numel() - 1
    rows = []
    for (name, layer), cell in sums.items():
        n, n_next = cell["n"], cell["n_next"]
        rows.append(
            {
                "lens": name,
                "layer": layer,
                "kl_to_final": cell["kl_to_final"] / n,
                "top1_agreement": cell["top1_agreement"] / n,
                f"current_token@{k}": cell["current_token"] / n,
                f"next_token@{k}": cell["next_token"] / n_next,
                "n_positions": int(n),
            }
        )
    return pd.DataFrame(rows)


_MEASURES = ("kl_to_final", "top1_agreement", "current_token", "next_token", "n", "n_next")

__all__ = ["reference_texts", "split_texts", "text_lens_curves", "text_prompts"]
