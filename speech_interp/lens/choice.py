"""Choosing the lens for a transcription claim: the candidate that reads written words best.

The rule (:data:`CHOICE_RULE`), fixed before any speech is read with it: each candidate lens
reads the analysed utterances *written* as text (:func:`~speech_interp.lens.ceiling.text_ceiling`;
held-out text: the on-the-fly current lens is fitted on other sentences), and the one with the
highest mean content-word ceiling at top-5 over the intermediate streams (1 .. L-1) is chosen;
ties go to the earlier candidate. It replaces "lowest KL to the final layer", which rewards
next-token fidelity, not seeing the word.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from speech_interp.data.utterances import Utterance
from speech_interp.hooks import TokenLayout
from speech_interp.lens.ceiling import text_ceiling
from speech_interp.lens.lenses import Lens

CHOICE_K = 5
CHOICE_RULE = (
    "the lens for a transcription claim is the candidate with the highest mean content-word text "
    f"ceiling (top-{CHOICE_K}) over the intermediate streams 1..L-1, read on the analysed "
    "utterances written as text before any speech is read; ties go to the earlier candidate"
)


def intermediate_ceiling(ceiling: pd.DataFrame, k: int = CHOICE_K) -> float:
    """Mean content-word ``text_ceiling`` at ``k`` over streams 1 .. L-1 of one lens."""
    rows = ceiling[(ceiling.metric == "text_ceiling") & (ceiling.k == k)
                   & (ceiling.words == "content")]  # fmt: skip
    last = int(rows.layer.max())
    middle = rows[(rows.layer >= 1) & (rows.layer < last)]
    if middle.empty:
        raise ValueError("the text ceiling has no intermediate stream to choose a lens on")
    return float(middle.value.mean())


def choose_lens(
    model,
    layout: TokenLayout,
    utterances: Sequence[Utterance],
    builders: dict[str, Callable[[], tuple[Lens, str | None]]],
    *,
    model_id: str = "",
    backend: str = "",
    seed: int = 0,
) -> tuple[str, Lens, str | None, dict[str, pd.DataFrame], pd.DataFrame]:
    """Build each candidate (name -> builder returning (lens, note)), read its text ceiling and
    pick by :data:`CHOICE_RULE`: (chosen name, its lens, its note, every candidate's ceiling rows
    by name, the choice table: one row per candidate with its intermediate ceiling and
    ``chosen``)."""
    if not builders:
        raise ValueError("choose_lens needs at least one candidate lens")
    built, rows = {}, []
    for name, build in builders.items():
        lens, note = build()
        ceiling = text_ceiling(model, layout, lens, utterances, model_id=model_id,
                               backend=backend, seed=seed)  # fmt: skip
        built[name] = (lens, note, ceiling)
        rows.append({"lens": name, "intermediate_ceiling": intermediate_ceiling(ceiling)})
    table = pd.DataFrame(rows)
    best = table.intermediate_ceiling.max()
    chosen = str(table.lens[table.intermediate_ceiling == best].iloc[0])
    table["chosen"] = table.lens == chosen
    lens, note, _ = built[chosen]
    return chosen, lens, note, {n: b[2] for n, b in built.items()}, table


__all__ = ["CHOICE_K", "CHOICE_RULE", "choose_lens", "intermediate_ceiling"]
