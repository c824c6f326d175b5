"""The ``lens`` command end to end (``speech_interp.cli.lens``)."""

import json
import warnings
from dataclasses import replace

import pandas as pd
import pytest
import typer

from speech_interp.cli.lens import lens_command
from speech_interp.data import write_utterances
from speech_interp.lens import (
    LENS_COLUMNS,
)

pytestmark = pytest.mark.integration


def test_lens_command_end_to_end(models, tmp_path, make_utterances):
    utts = [replace(u, split="eval") for u in make_utterances(3, seed=5)]
    utts += [replace(u, id=f"other-{u.id}", split="other") for u in make_utterances(2, seed=6)]
    data_file = write_utterances(tmp_path / "data.jsonl", utts, family="sims")
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = lens_command(
            model=models["path"], data=data_file, split="eval", backend="tl", out=out, seed=1,
            chunk_size=100, batch_rows=1,
        )  # fmt: skip
        lens_command(
            model=models["path"],
            data=data_file,
            backend="nnsight",
            lens="tuned",
            tuned_path=tmp_path / "tuned",
            tuned_steps=3,
            out=tmp_path / "out_tuned",
        )
    for name in ("lens.csv", "lens_words.csv", "phases.json", "phase_curves.png",
                 "token_heatmap.png", "run.json"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    table = pd.read_csv(out / "lens.csv")
    assert list(table.columns) == LENS_COLUMNS
    ceiling = table[table.metric.str.startswith("text_ceiling")]
    assert len(table) == len(result.summary) + len(ceiling)  # the run's rows + its text ceiling
    assert sorted(ceiling.layer.unique()) == sorted(table.layer.unique())
    run = json.loads((out / "run.json").read_text())
    assert run["model_id"] == models["path"] and run["seed"] == 1 and run["batch_rows"] == 1
    assert run["split"] == "eval" and run["n_utterances"] == 3  # the "other" split is left out
    assert list(run["weights_sha256"]) == ["model.safetensors"]
    assert set(run["packages"]) == {
        "torch",
        "transformers",
        "transformer-lens",
        "nnsight",
        "speech-interp",
    }
    assert run["words_target_missing"] == 0
    phases = json.loads((out / "phases.json").read_text())
    assert [b["phase"] for b in phases["bands"]] == ["transcription", "next_word", "speech"]
    assert (tmp_path / "tuned" / "params.pt").exists()
    with pytest.raises(typer.BadParameter, match="only used with --lens tuned"):
        lens_command(model=models["path"], data=data_file, tuned_path=tmp_path, out=out)
    tuned = pd.read_csv(tmp_path / "out_tuned" / "lens.csv")
    assert set(tuned.lens) == {"tuned"} and set(tuned.backend) == {"nnsight"}
