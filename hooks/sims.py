"""SIMS (slprl): Qwen2 / Llama text LMs extended with 500 mHuBERT-25Hz units.

Vocabulary: ``<Un0>`` .. ``<Un499>`` plus the modality markers ``<speech>`` and ``<text>``. Units
are k-means (500 centroids) of mHuBERT-base-25Hz layer 11 (``slprl/mhubert-base-25hz``),
deduplicated, 25 Hz before dedup.
"""

from .spec import FamilySpec

SIMS = FamilySpec(
    name="sims",
    description="SIMS interleaved speech-text LMs (Qwen2.5 / Llama-3.2 bases), slprl",
    unit_pattern=r"<Un(\d+)>",
    speech_marker="<speech>",
    text_marker="<text>",
    unit_rate_hz=25.0,
    n_units=500,
    architectures=("Qwen2ForCausalLM", "LlamaForCausalLM"),
    checkpoints=("slprl/SIMS-7B", "slprl/SIMS-Qwen2.5-*", "slprl/SIMS-Llama3.2-3B"),
    unit_extractor="mhubert: slprl/mhubert-base-25hz layer 11 + 500-centroid k-means",
    needs="weights from the HF hub (or a local save_pretrained dir); audio needs the mHuBERT "
    "checkpoint and its k-means file",
)
