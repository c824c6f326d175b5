"""The organism: the tiny interleaved speech-text LM that ships with speech-interp.

A standard HF Llama config whose text vocabulary was extended with ``<unit0>`` .. ``<unitN>``
(MFCC + k-means units, 25 Hz, deduplicated) and the markers ``<speech>`` / ``<text>``.
"""

from speech_interp.organism import VARIANTS

from .spec import FamilySpec

ORGANISM = FamilySpec(
    name="organism",
    description="speech-interp's shipped tiny interleaved speech-text LM (Llama config)",
    unit_pattern=r"<unit(\d+)>",
    speech_marker="<speech>",
    text_marker="<text>",
    unit_rate_hz=25.0,
    architectures=("LlamaForCausalLM",),
    checkpoints=("organism",) + tuple(f"organism:{v}" for v in VARIANTS[1:]),
    unit_extractor="speech_interp MFCC + deltas k-means (shipped centroids)",
    needs="nothing: ships inside the package",
)
