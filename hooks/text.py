"""Plain text LMs (no speech units): the base a speech LM is made from, read on text.

A text-only model has no unit tokens, so it cannot be detected; name the family
(``speech_interp.load(path, family="text")``, ``--family text``). Its layout has no units and no
markers: every token is text except the tokenizer's specials. Used to fit and validate lenses on
text (:mod:`speech_interp.lens.validate`) and as the input of ``make-checkpoint``.
"""

from .spec import FamilySpec

TEXT = FamilySpec(
    name="text",
    description="a plain text LM without speech units (lens fitting and validation on text)",
    unit_pattern=r"(?!)",  # matches no token
    speech_marker=None,
    text_marker=None,
    unit_rate_hz=None,
    architectures=("any HF *ForCausalLM with model.layers / model.norm / lm_head",),
    unit_extractor="none (text only)",
    needs="family='text' given explicitly (a vocabulary without units is not detected)",
    text_only=True,
)
