"""The plan of a lens run: one plan per utterance, merged with rows, slots and groups offset."""

import pytest
import torch

from speech_interp.data.targets import TargetResolver, draw_controls
from speech_interp.data.uniqueness import uniqueness_points
from speech_interp.lens.plan import merge_plans, plan_utterance

pytestmark = pytest.mark.integration


def test_merged_plan_offsets_each_prompt(models, data):
    layout, tok = models["layout"], models["tl"].tokenizer
    resolver = TargetResolver(tok, layout)
    controls, points = draw_controls(data, resolver, seed=0), uniqueness_points(data)
    plans = []
    for u, utt in enumerate(data[:2]):
        prompt = utt.to_prompt(layout, tok)
        rows, plan = plan_utterance(utt, prompt, u, layout, resolver, controls[u], points[u])
        assert len(rows) == plan.n_slots == sum(w.modality == "speech" for w in utt.words)
        assert (plan.slot_of_row >= 0).sum() == sum(r["n_positions"] for r in rows)
        plans.append(plan)
    a, b = plans
    merged = merge_plans(plans)
    assert torch.equal(merged.rows, torch.cat([a.rows, b.rows]))
    assert torch.equal(merged.query_row, torch.cat([a.query_row, b.query_row + len(a.rows)]))
    assert merged.n_slots == a.n_slots + b.n_slots
    slots = torch.cat([a.query_group // a.n_kinds, b.query_group // b.n_kinds + a.n_slots])
    assert torch.equal(merged.query_group // merged.n_kinds, slots)
