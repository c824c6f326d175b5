"""``ablate --lens``: the verdict's decodability read by the chosen lens, its ceiling beside it."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from speech_interp.cli import app

pytestmark = pytest.mark.integration


def test_ablate_reads_decodability_with_the_chosen_lens(tmp_path):
    """The default ``--lens auto`` reads both candidates' text ceilings first and keeps the
    current lens on the planted organism, where the logit lens is blind past stream 0."""
    out = tmp_path / "ablate"
    args = ["ablate", "--model", "organism:planted", "--streams", "2-3",
            "--max-pairs", "10", "--n-random", "3", "--no-probe", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert run["lens_option"] == "auto" and run["lens"] == "current"
    assert run["lens_note"].startswith("auto chose current") and "fitted on" in run["lens_note"]
    assert run["text_direction"] == "current"  # the ablated direction is the one the lens reads
    table = pd.read_csv(out / "lens.csv")
    assert set(table.lens) == {"current"}
    ceiling = table[table.metric == "text_ceiling"]
    assert sorted(ceiling.layer.unique()) == list(range(table.layer.max() + 1))
    assert run["blind_streams"] == []  # the current lens reads written words at every stream
    verdict = json.loads((out / "verdict.json").read_text())
    assert [b["band"] for b in verdict["organism:planted"]["bands"]] == ["2-3"]


def test_choice_rule_takes_the_highest_intermediate_ceiling_and_the_first_on_ties():
    from speech_interp.lens.choice import intermediate_ceiling

    def rows(values):
        return pd.DataFrame({"metric": "text_ceiling", "k": 5, "words": "content",
                             "layer": range(len(values)), "value": values})  # fmt: skip

    # stream 0 and the last stream do not count: (0.2 + 0.4) / 2
    assert intermediate_ceiling(rows([1.0, 0.2, 0.4, 1.0])) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="no intermediate stream"):
        intermediate_ceiling(rows([1.0, 1.0]))


def test_current_lens_text_direction_is_its_read_out_gradient():
    """Independent check: a finite-difference gradient of the read-out score along the direction
    equals its norm, and no other unit direction raises the score faster."""
    import torch

    import speech_interp as si
    from speech_interp.lens import build_lens
    from speech_interp.organism.evalset import lens_fit_sentences
    from speech_interp.organism.world import V2

    model, layout = si.load("organism", backend="tl")
    fit, val = lens_fit_sentences(V2, set(), 200, 50, seed=0)
    lens, _ = build_lens("current", model, layout, texts=(fit, val, "test"), progress=False)
    token = model.tokenizer.convert_tokens_to_ids("Ġotter")
    unit = lens.unembed.weight[token].float()
    x = torch.randn(lens.mean.shape[1])

    def score(v):
        return float(lens.translate(2, v) @ unit)

    d = lens.text_direction(2, token)
    assert float(d.norm()) == pytest.approx(1.0, abs=1e-5)
    eps = 1e-2
    slope = (score(x + eps * d) - score(x - eps * d)) / (2 * eps)
    others = torch.nn.functional.normalize(torch.randn(20, d.shape[0]), dim=-1)
    other_slopes = [(score(x + eps * o) - score(x - eps * o)) / (2 * eps) for o in others]
    assert slope > max(other_slopes) and slope > 0


def test_ablate_refuses_an_unknown_lens(tmp_path):
    result = CliRunner().invoke(
        app, ["ablate", "--model", "organism", "--lens", "nope", "--out", str(tmp_path)]
    )
    assert result.exit_code != 0 and "--lens must be one of" in result.output
