"""The plan of a lens run: per prompt, which positions to read and which (position, token)
queries to score.

Each spoken word gets target ids per query kind (:func:`word_queries`: its own target, its drawn
control, the next word's target and its control, then the members of its control pool), and a
:class:`Plan` (:func:`plan_prompt`) lists the positions to read and, per query, the position rules
(:data:`speech_interp.lens.metrics.POSITION_RULES`) it counts for. Plans of several prompts merge
into one (:func:`merge_plans`) for one batched forward and vocabulary pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from speech_interp.data.prompt import Prompt
from speech_interp.data.targets import MISSING
from speech_interp.data.utterances import Utterance
from speech_interp.hooks import TokenLayout
from speech_interp.lens.metrics import POSITION_RULES

# query kinds: the word's own target, its drawn control, the next word's target and its control;
# kinds from N_KINDS on are the members of the word's control pool (expected control)
OWN, CONTROL, NEXT, NEXT_CONTROL = range(4)
N_KINDS = 4


@dataclass
class Plan:
    """What to score in one prompt: rows to read, (row, token) queries and pooled queries.

    Rows are every scored word's positions (``slot_of_row``) then each word's pre-onset position
    (the position before its first token). Each query carries the position rules it counts for.
    """

    rows: Int[Tensor, " r"]  # prompt positions to read
    slot_of_row: Int[Tensor, " r"]  # word slot of a word row; -1 for a pre-onset row
    last_of_slot: Int[Tensor, " s"]  # row index of each slot's last position
    query_row: Int[Tensor, " q"]
    query_tok: Int[Tensor, " q"]
    query_group: Int[Tensor, " q"]  # slot * n_kinds + kind
    query_rules: dict[str, Tensor]  # position rule -> bool per query
    pool_query: Int[Tensor, " pq"]  # slot of each max-pooled query
    pool_tok: Int[Tensor, " pq"]
    pool_group: Int[Tensor, " pq"]
    n_slots: int
    n_kinds: int


def word_unit_positions(prompt: Prompt, layout: TokenLayout, w: int, n_units: int) -> list[int]:
    """Prompt positions of word ``w``'s unit tokens, one per unit (markers, pitch or style
    tokens inside the word are not units)."""
    pos = prompt.word_positions[w]
    units = layout.tokens_to_units(prompt.input_ids[pos])
    found = pos[units >= 0].tolist()
    if len(found) != n_units:
        raise ValueError(
            f"word {w} ({prompt.words[w]!r}) has {n_units} units but {len(found)} unit tokens in "
            "its prompt; the uniqueness point cannot be placed"
        )
    return found


def plan_prompt(
    prompt: Prompt,
    layout: TokenLayout,
    slots: list[int],
    tokens: list[list[int]],
    unique_at: list[int],
    n_units: list[int],
) -> Plan:
    """``slots``: spoken word indices; ``tokens[s]``: target ids per kind (-1 = none);
    ``unique_at[s]``: index of the word's uniqueness point among its ``n_units[s]`` units."""
    n_kinds = max(len(t) for t in tokens)
    rows, slot_of_row, last_of_slot = [], [], []
    qr, qt, qg, pq, pt, pg = [], [], [], [], [], []
    flags: dict[str, list[bool]] = {rule: [] for rule in POSITION_RULES if rule != "maxpool"}
    starts = []
    for s, w in enumerate(slots):
        word_pos = prompt.word_positions[w].tolist()
        first = len(rows)
        starts.append(first)
        rows += word_pos
        slot_of_row += [s] * len(word_pos)
        last_of_slot.append(first + len(word_pos) - 1)
    pre_rows = []
    for w in slots:
        pre = int(prompt.word_positions[w][0]) - 1
        pre_rows.append(len(rows) if pre >= 0 else -1)
        if pre >= 0:
            rows.append(pre)
            slot_of_row.append(-1)
    for s, w in enumerate(slots):
        word_pos = prompt.word_positions[w].tolist()
        first, last = starts[s], last_of_slot[s]
        up_pos = word_unit_positions(prompt, layout, w, n_units[s])[unique_at[s]]
        for kind, tok in enumerate(tokens[s]):
            if tok < 0:
                continue
            group = s * n_kinds + kind
            if kind in (NEXT, NEXT_CONTROL):
                cells = [(last, {"last"})]
            else:
                cells = [
                    (first + i, {"any"} | ({"last"} if first + i == last else set())
                     | ({"after_uniqueness"} if p >= up_pos else set()))
                    for i, p in enumerate(word_pos)
                ]  # fmt: skip
                if pre_rows[s] >= 0:
                    cells.append((pre_rows[s], {"pre_onset"}))
            pq.append(s)  # every kind is also read in the word's max-pooled logits
            pt.append(tok)
            pg.append(group)
            for row, rules in cells:
                qr.append(row)
                qt.append(tok)
                qg.append(group)
                for rule, col in flags.items():
                    col.append(rule in rules)
    long = torch.long
    return Plan(
        rows=torch.tensor(rows, dtype=long),
        slot_of_row=torch.tensor(slot_of_row, dtype=long),
        last_of_slot=torch.tensor(last_of_slot, dtype=long),
        query_row=torch.tensor(qr, dtype=long),
        query_tok=torch.tensor(qt, dtype=long),
        query_group=torch.tensor(qg, dtype=long),
        query_rules={rule: torch.tensor(col, dtype=torch.bool) for rule, col in flags.items()},
        pool_query=torch.tensor(pq, dtype=long),
        pool_tok=torch.tensor(pt, dtype=long),
        pool_group=torch.tensor(pg, dtype=long),
        n_slots=len(slots),
        n_kinds=n_kinds,
    )


def merge_plans(plans: list[Plan]) -> Plan:
    """One plan for several prompts whose read rows are concatenated in order: rows, slots and
    pools are offset, and groups renumbered with the largest number of kinds."""
    if len(plans) == 1:
        return plans[0]
    n_kinds = max(p.n_kinds for p in plans)
    parts: dict[str, list[Tensor]] = {}
    row0 = slot0 = 0
    for p in plans:
        slot, kind = p.query_group // p.n_kinds, p.query_group % p.n_kinds
        pool_slot, pool_kind = p.pool_group // p.n_kinds, p.pool_group % p.n_kinds
        shifted = {
            "rows": p.rows,
            "slot_of_row": torch.where(p.slot_of_row >= 0, p.slot_of_row + slot0, -1),
            "last_of_slot": p.last_of_slot + row0,
            "query_row": p.query_row + row0,
            "query_tok": p.query_tok,
            "query_group": (slot + slot0) * n_kinds + kind,
            "pool_query": p.pool_query + slot0,
            "pool_tok": p.pool_tok,
            "pool_group": (pool_slot + slot0) * n_kinds + pool_kind,
        }
        for key, value in shifted.items():
            parts.setdefault(key, []).append(value)
        row0 += len(p.rows)
        slot0 += p.n_slots
    rules = {r: torch.cat([p.query_rules[r] for p in plans]) for r in plans[0].query_rules}
    return Plan(**{key: torch.cat(v) for key, v in parts.items()}, query_rules=rules,
                 n_slots=slot0, n_kinds=n_kinds)  # fmt: skip


def word_queries(
    utt: Utterance, prompt: Prompt, u: int, w: int, resolver, controls, point
) -> tuple[dict, list[int]]:
    """Word ``w`` of utterance ``u``: its per-word frame row (before the scores) and its
    target ids per query kind (-1 = none; the control-pool members after :data:`N_KINDS`)."""
    word = utt.words[w]
    target = resolver(word.word)
    control = controls[w]
    has_next = w + 1 < len(utt.words)
    nxt = utt.words[w + 1] if has_next else None
    next_target = resolver(nxt.word) if has_next else MISSING
    next_control = controls[w + 1] if has_next else None
    next_control_target = next_control.target if next_control else MISSING
    row = {
        "utterance": utt.id,
        "utterance_index": u,
        "word_index": w,
        "word": word.word,
        "category": word.category,
        "content": word.content,
        "n_positions": int(prompt.word_positions[w].numel()),
        "n_units": len(word.units),
        "uniqueness_point": point.index,
        "unique": point.unique,
        "target_id": target.token_id,
        "target_token": target.token,
        "target_rule": target.rule,
        "control_word": control.word,
        "control_id": control.target.token_id,
        "control_rule": control.rule,
        "next_word": nxt.word if nxt else None,
        "next_content": nxt.content if nxt else None,
        "next_id": next_target.token_id,
        "next_target_rule": next_target.rule if nxt else None,
        "next_control_word": next_control.word if next_control else None,
        "next_control_id": next_control_target.token_id,
    }
    kinds = [
        target.token_id,
        control.target.token_id if target.found else -1,
        next_target.token_id,
        next_control_target.token_id if next_target.found else -1,
    ]
    kinds += [m[1].token_id for m in control.pool] if target.found else []
    return row, kinds


def plan_utterance(
    utt: Utterance, prompt: Prompt, u: int, layout: TokenLayout, resolver, controls, points
) -> tuple[list[dict], Plan] | None:
    """The per-word rows (:func:`word_queries`) and the :class:`Plan` of utterance ``u``'s
    spoken words (``controls``, ``points``: its words' controls and uniqueness points); None
    when it has none."""
    slots = [i for i, w in enumerate(utt.words) if w.modality == "speech"]
    if not slots:
        return None
    tokens, rows = [], []
    for w in slots:
        row, kinds = word_queries(utt, prompt, u, w, resolver, controls, points[w])
        tokens.append(kinds)
        rows.append(row)
    unique_at = [points[w].index for w in slots]
    n_units = [len(utt.words[w].units) for w in slots]
    return rows, plan_prompt(prompt, layout, slots, tokens, unique_at, n_units)


__all__ = [
    "CONTROL",
    "NEXT",
    "NEXT_CONTROL",
    "N_KINDS",
    "OWN",
    "Plan",
    "merge_plans",
    "plan_prompt",
    "plan_utterance",
    "word_queries",
    "word_unit_positions",
]
