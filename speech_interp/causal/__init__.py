"""The causal tests: is the text stage load-bearing or only decodable?

- ``readouts``: what every test reads out (the next word, in speech or text) and the skip rules;
- ``tables``: the result tables' columns and the one row builder;
- ``patching`` / ``attribution``: exact and gradient-estimated activation patching of pairs;
- ``ablation``: text-, probe- and random-direction ablation at a spoken word's positions;
- ``substitution``: moving a spoken word's state toward another word's text state;
- ``verdict``: decodable x causal -> load-bearing / decodable-only / neither, per layer band.

A new intervention goes here, expressed as :class:`~speech_interp.core.edits.Edit`\\ s run by
:func:`~speech_interp.core.edits.run_edited`, its rows built with
:func:`~speech_interp.causal.tables.make_table`.
"""

from speech_interp.causal.ablation import (
    ablate,
    ablate_bands,
    fit_probe,
    fit_probes,
    random_directions,
    text_directions,
)
from speech_interp.causal.attribution import attribution_sweep, rank_agreement
from speech_interp.causal.patching import PatchResult, patch_sweep
from speech_interp.causal.readouts import METRICS
from speech_interp.causal.substitution import substitute
from speech_interp.causal.tables import (
    ABLATION_COLUMNS,
    EXTRA_COLUMNS,
    PATCH_COLUMNS,
    SUBSTITUTION_COLUMNS,
)
from speech_interp.causal.verdict import VERDICTS, verdicts

__all__ = [
    "ABLATION_COLUMNS",
    "EXTRA_COLUMNS",
    "METRICS",
    "PATCH_COLUMNS",
    "PatchResult",
    "SUBSTITUTION_COLUMNS",
    "VERDICTS",
    "ablate",
    "ablate_bands",
    "attribution_sweep",
    "fit_probe",
    "fit_probes",
    "patch_sweep",
    "random_directions",
    "rank_agreement",
    "substitute",
    "text_directions",
    "verdicts",
]
