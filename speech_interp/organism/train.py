"""Train the organism and its ablations.

Recipe (see docs/organism.md for the numbers):

1. Text pretraining: a tied-embedding Llama config trained on text-only grammar sentences.
2. The vocabulary is extended with ``<unit0>`` .. ``<unit{n-1}>`` and ``<speech>`` / ``<text>``.
3. A mix of speech-only, text-only and interleaved sequences (:mod:`corpus`).

Variants, the paper's knob grid (:data:`VARIANT_SPECS`): init {text (1+2+3), random (2+3 from
random weights)} x data of stage 3 {interleaved, separate (speech and text balanced, never in one
sequence), speech-only}: ``full`` (text, interleaved), ``no-interleave`` (text, separate),
``speech-only``, ``random-init`` (random, interleaved), ``random-separate``,
``random-speech-only``; and two controls: ``planted`` (``full`` plus an auxiliary loss,
``planted_weight`` x cross-entropy of the logit lens at ``planted_layer`` towards the word's text
token at every unit position of a spoken word: a positive control for the lens and causal tests),
``planted-text`` (``full`` plus ``planted_weight`` x the relative squared distance, at stream
``planted_layer`` and every unit position of a spoken word, to the state the model gives the same
word *written* in the same sentence: a text stage planted where written words are, the positive
control for a current-word lens fitted on text),
``decodable-only`` (``planted``, but during training the input of block ``planted_layer`` has the
component along the word's text direction moved onto a random other word's direction at every unit
position, after the lens loss reads it: the word stays decodable there, yet later layers learn that
this component carries nothing; the negative control of the causal tests).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import LlamaConfig, LlamaForCausalLM

from speech_interp.hooks import ORGANISM, ORGANISM_UNITS, TokenLayout, submodule
from speech_interp.organism import ORGANISM_DIR

from .controls import DirectionSwap, planted_targets, written_state_loss
from .corpus import SequenceSampler, collate
from .evalset import excluded_texts
from .grammar import P_SAME_ENTITY, P_SECOND
from .lexicon import inventory_words
from .tokenizer import word_bpe_tokenizer
from .voices import TRAIN_VOICES, SpeechTable, build_speech_table, cache_key
from .world import World, get_world


@dataclass(frozen=True)
class VariantSpec:
    """One cell of the knob grid: initialisation, stage-3 data mix, and the control it is."""

    init: str  # "text" | "random"
    mix: str  # a key of corpus.MIXES
    control: str = ""  # "" | "planted" | "decodable-only" | "planted-text"


VARIANT_SPECS: dict[str, VariantSpec] = {
    "full": VariantSpec("text", "interleaved"),
    "no-interleave": VariantSpec("text", "separate"),
    "speech-only": VariantSpec("text", "speech-only"),
    "random-init": VariantSpec("random", "interleaved"),
    "random-separate": VariantSpec("random", "separate"),
    "random-speech-only": VariantSpec("random", "speech-only"),
    "planted": VariantSpec("text", "interleaved", "planted"),
    "decodable-only": VariantSpec("text", "interleaved", "decodable-only"),
    "planted-text": VariantSpec("text", "interleaved", "planted-text"),
}


@dataclass(frozen=True)
class OrganismConfig:
    n_units: int = ORGANISM_UNITS
    d_model: int = 128
    n_layers: int = 6
    n_heads: int = 4
    d_ff: int = 512
    batch_size: int = 32
    text_steps: int = 1500
    mix_steps: int = 1200
    lr: float = 2e-3
    mix_lr: float = 2e-3
    warmup: int = 50
    p_second: float = P_SECOND  # grammar: share of two-clause sentences
    p_same_entity: float = P_SAME_ENTITY  # grammar: share of second clauses about the same entity
    planted_layer: int = 3
    planted_weight: float = 0.3
    planted_loss: str = "distance"  # planted-text: "distance" | "contrastive" (controls.py)
    n_eval: int = 300
    world: str = "v2"  # organism.world.WORLDS: the lexicon, the facts and the grammar's words

    @property
    def lexicon(self) -> World:
        return get_world(self.world)

    def with_overrides(self, settings: list[str]) -> OrganismConfig:
        """A copy with ``key=value`` settings applied (values parsed as the field's type)."""
        types = {f.name: type(getattr(self, f.name)) for f in fields(self)}
        changes = {}
        for item in settings:
            key, sep, value = item.partition("=")
            if not sep or key not in types:
                raise ValueError(f"bad setting {item!r}: use key=value with a key of {list(types)}")
            changes[key] = types[key](value)
        return replace(self, **changes)

    @classmethod
    def quick(cls) -> OrganismConfig:
        """Tiny sizes for tests: same code path, seconds instead of minutes."""
        return cls(
            d_model=32, n_layers=2, n_heads=2, d_ff=64, batch_size=8,
            text_steps=20, mix_steps=20, planted_layer=1, n_eval=20,
        )  # fmt: skip


def grammar_settings(cfg: OrganismConfig) -> dict:
    """The recipe's keyword settings of :func:`grammar.sample_sentence`."""
    return {"p_second": cfg.p_second, "p_same_entity": cfg.p_same_entity, "world": cfg.lexicon}


def stage_sampler(
    cfg: OrganismConfig, layout, tok, table: SpeechTable, mix: str, seed: int
) -> SequenceSampler:
    """The sequences of a training stage as ``train_variant`` draws them: the text stage with
    ``seed``, the mixed stage (``mix`` != "text") with ``seed + 2``; training voices, the
    held-out sentences excluded (one held-out set for every seed)."""
    stage_seed = seed if mix == "text" else seed + 2
    voices = [v.name for v in TRAIN_VOICES]
    return SequenceSampler(
        layout, tok, table.units, voices, mix, stage_seed,
        excluded_texts(cfg.n_eval, world=cfg.lexicon),
        grammar_settings(cfg),
    )  # fmt: skip


def build_tokenizer(n_units: int, world: World):
    """The organism's tokenizer: one token per lexicon word, then units and markers."""
    tok = word_bpe_tokenizer(world.words)
    n_text = len(tok)
    tok.add_tokens([f"<unit{i}>" for i in range(n_units)] + ["<speech>", "<text>"])
    return tok, n_text


def new_model(cfg: OrganismConfig, vocab_size: int, tok) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_ff,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return LlamaForCausalLM(config)


def cosine_lr(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_stage(
    model: LlamaForCausalLM,
    sampler: SequenceSampler,
    steps: int,
    cfg: OrganismConfig,
    *,
    pad_id: int,
    planted: dict[str, int] | None = None,
    swap: DirectionSwap | None = None,
    desc: str = "train",
    progress: bool = True,
    resume: Path | None = None,
    lr: float | None = None,
    plant_text: bool = False,
) -> list[float]:
    """AdamW with warmup + cosine decay; returns the loss curve.

    With ``resume``, the whole training state (weights, optimizer, step, losses, the sampler's
    and the swap's random generators, torch's) is saved there atomically every ``steps // 10``
    steps; a rerun with the same file continues from it and ends with the same weights, bit for
    bit, as an uninterrupted run. ``plant_text`` adds ``planted-text``'s loss
    (:func:`~speech_interp.organism.controls.written_state_loss`).
    """
    model.train()
    peak = cfg.lr if lr is None else lr
    opt = torch.optim.AdamW(model.parameters(), lr=peak, betas=(0.9, 0.98), weight_decay=0.01)
    losses: list[float] = []
    start = 0
    if resume is not None and resume.exists():
        state = torch.load(resume, map_location="cpu", weights_only=False)  # our own file
        if state["steps"] != steps or state["desc"] != desc:
            raise ValueError(f"{resume} belongs to another training run ({state['desc']})")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sampler.rng.bit_generator.state = state["sampler"]
        if swap is not None:
            swap.gen.set_state(state["swap"])
        torch.set_rng_state(state["torch"])
        losses, start = list(state["losses"]), int(state["step"])
    every = max(1, steps // 10)
    bar = tqdm(range(start, steps), desc=desc, disable=not progress)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, steps, peak, cfg.warmup)
        prompts = [sampler.sample().prompt for _ in range(cfg.batch_size)]
        batch = collate(prompts, pad_id)
        if swap is not None:
            swap.targets = planted_targets(prompts, planted, batch["input_ids"].shape[1])
        out = model(**batch, output_hidden_states=planted is not None or plant_text)
        loss = out.loss
        if plant_text:
            aux = written_state_loss(
                model, out.hidden_states[cfg.planted_layer], prompts, sampler.layout, sampler.tok,
                cfg.planted_layer, pad_id, contrastive=cfg.planted_loss == "contrastive",
            )  # fmt: skip
            if aux is not None:
                loss = loss + cfg.planted_weight * aux
        if planted is not None:
            targets = planted_targets(prompts, planted, batch["input_ids"].shape[1])
            if bool((targets >= 0).any()):  # skipped when the batch has no spoken word (NaN)
                hidden = out.hidden_states[cfg.planted_layer]
                lens = submodule(model, "unembed")(submodule(model, "final_norm")(hidden))
                aux = F.cross_entropy(lens.flatten(0, 1), targets.flatten(), ignore_index=-100)
                loss = loss + cfg.planted_weight * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(out.loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if resume is not None and ((step + 1) % every == 0 or step + 1 == steps):
            _save_training_state(resume, step + 1, steps, desc, model, opt, sampler, swap, losses)
    model.eval()
    return losses


def _save_training_state(path, step, steps, desc, model, opt, sampler, swap, losses) -> None:
    from speech_interp.artifacts import atomic_path

    state = {
        "step": step, "steps": steps, "desc": desc, "losses": losses,
        "model": model.state_dict(), "opt": opt.state_dict(),
        "sampler": sampler.rng.bit_generator.state,
        "swap": None if swap is None else swap.gen.get_state(),
        "torch": torch.get_rng_state(),
    }  # fmt: skip
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def speech_table(cfg: OrganismConfig, seed: int, cache_dir: Path, progress: bool) -> SpeechTable:
    """Build (or reuse from ``cache_dir``) the units of every word in every voice."""
    words = inventory_words()
    name = f"speech-{cache_key(words, cfg.n_units, seed)}"
    # The units of every word in every voice, as shipped (seed 0, 64 units): training reads them
    # instead of re-synthesising, so the shipped models are reproducible whatever espeak-ng
    # version is installed. Other seeds / unit counts are synthesised and cached.
    for path in (ORGANISM_DIR / name, cache_dir / name):
        if (path / "speech_table.json").exists():
            return SpeechTable.load(path)
    table = build_speech_table(words, n_units=cfg.n_units, seed=seed, progress=progress)
    table.save(cache_dir / name)
    return table


@functools.cache
def shipped_units() -> dict[str, dict[str, list[int]]]:
    """The shipped unit table's units (seed 0): voice -> word -> deduplicated units."""
    return speech_table(OrganismConfig(), 0, ORGANISM_DIR, progress=False).units


@dataclass
class Trained:
    model: LlamaForCausalLM
    tokenizer: object
    layout: TokenLayout
    table: SpeechTable
    info: dict


def train_variant(
    variant: str,
    cfg: OrganismConfig,
    seed: int,
    cache_dir: Path,
    *,
    units_seed: int = 0,
    progress: bool = True,
) -> Trained:
    """Train one variant end to end (the text stage is cached and shared between variants).

    ``seed`` drives initialisation and data order; ``units_seed`` the k-means of the speech units
    (kept at 0 by default, so seeds compare models over the same shipped units).
    """
    if variant not in VARIANT_SPECS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANT_SPECS)}")
    spec = VARIANT_SPECS[variant]
    cache_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    table = speech_table(cfg, units_seed, cache_dir, progress)
    tok, n_text = build_tokenizer(cfg.n_units, cfg.lexicon)
    layout = ORGANISM.bind(tok)
    timings: dict[str, float] = {}
    text_losses: list[float] = []
    if spec.init == "random":
        torch.manual_seed(seed)
        model = new_model(cfg, len(tok), tok)
    else:
        text_cfg = replace(
            cfg, mix_steps=0, mix_lr=0.0, n_eval=0, planted_layer=0, planted_weight=0.0
        )
        key = json.dumps([asdict(text_cfg), seed], sort_keys=True)
        text_path = cache_dir / f"text-{hash_str(key)}"
        if (text_path / "config.json").exists():
            model = LlamaForCausalLM.from_pretrained(text_path)
            timings = json.loads((text_path / "timings.json").read_text())
        else:
            torch.manual_seed(seed)
            model = new_model(cfg, n_text, tok)
            sampler = stage_sampler(cfg, layout, tok, table, "text", seed)
            t0 = time.time()
            resume = cache_dir / f"{text_path.name}.resume.pt"
            text_losses = train_stage(
                model, sampler, cfg.text_steps, cfg, pad_id=tok.pad_token_id,
                desc="text stage", progress=progress, resume=resume,
            )  # fmt: skip
            timings = {"text_stage_s": time.time() - t0, "text_final_loss": text_losses[-1]}
            model.save_pretrained(text_path)
            (text_path / "timings.json").write_text(json.dumps(timings))
            resume.unlink(missing_ok=True)
        torch.manual_seed(seed + 1)
        model.resize_token_embeddings(len(tok), mean_resizing=True)
    sampler = stage_sampler(cfg, layout, tok, table, spec.mix, seed)
    planted, swap = None, None
    if spec.control in ("planted", "decodable-only"):
        planted = {w: tok.convert_tokens_to_ids("Ġ" + w) for w in cfg.lexicon.words}
    if spec.control == "decodable-only":
        swap = DirectionSwap(model, cfg.planted_layer, list(planted.values()), seed + 3)
    t0 = time.time()
    run_key = json.dumps([asdict(cfg), seed, units_seed, variant], sort_keys=True)
    resume = cache_dir / f"mixed-{hash_str(run_key)}.resume.pt"
    mix_losses = train_stage(
        model, sampler, cfg.mix_steps, cfg, pad_id=tok.pad_token_id, planted=planted, swap=swap,
        desc=f"{variant} mixed stage", progress=progress, resume=resume, lr=cfg.mix_lr,
        plant_text=spec.control == "planted-text",
    )  # fmt: skip
    resume.unlink(missing_ok=True)
    timings["mixed_stage_s"] = time.time() - t0
    info = {
        "variant": variant,
        "seed": seed,
        "units_seed": units_seed,
        "config": asdict(cfg),
        "timings": timings,
        "final_mixed_loss": mix_losses[-1],
        "n_params": sum(p.numel() for p in model.parameters()),
    }
    return Trained(model, tok, layout, table, info)


def hash_str(text: str) -> int:
    """A stable (not salted) hash for cache keys."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def save_trained(trained: Trained, out_dir: Path) -> Path:
    """Save weights (float16, to ship small), tokenizer and training info with save_pretrained.

    Every figure of the model card is computed from these saved weights (cast back to float32).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    trained.model.to(torch.float16).save_pretrained(out_dir)
    trained.model.to(torch.float32)
    trained.tokenizer.save_pretrained(out_dir)
    (out_dir / "organism.json").write_text(json.dumps(trained.info, indent=2))
    return out_dir
