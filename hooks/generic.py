"""The generic rule: any causal LM whose vocabulary was extended with unit tokens.

Give the token pattern (a regex whose one group is the unit id) and, if the model has them, the
modality markers. Detection tries the registered families first; the generic family is used when
you pass a pattern yourself, e.g. ``generic_spec(r"<unit_(\\d+)>")``.
"""

from .spec import FamilySpec

GENERIC_DEFAULT_PATTERN = r"<(?:u|unit|Un|unit_)(\d+)>"


def generic_spec(
    unit_pattern: str = GENERIC_DEFAULT_PATTERN,
    speech_marker: str | None = None,
    text_marker: str | None = None,
    unit_rate_hz: float | None = None,
) -> FamilySpec:
    """A spec for a vocab-extended causal LM that no registered family describes."""
    return FamilySpec(
        name="generic",
        description="any vocab-extended causal LM, driven by a unit-token pattern",
        unit_pattern=unit_pattern,
        speech_marker=speech_marker,
        text_marker=text_marker,
        unit_rate_hz=unit_rate_hz,
        architectures=("any HF *ForCausalLM with model.layers / model.norm / lm_head",),
        unit_extractor="yours (pass pre-tokenized units) or speech_interp's MFCC k-means",
        needs="a unit-token regex; markers optional",
        min_units_to_detect=1,
    )


GENERIC = generic_spec()
