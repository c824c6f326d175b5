"""The paper's evaluation end to end on a replica of the fact set with real espeak-ng audio:
reader -> units (cached) -> lens under both protocols -> spoken knowledge -> verdict, on the
shipped organism, on CPU; ``lens --protocol paper`` on the units it wrote."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from speech_interp.cli import main
from speech_interp.cli.app import app
from speech_interp.data.factset import read_factset
from speech_interp.testing import replica_facts, write_factset_replica

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required for the fact-set replica (apt-get install espeak-ng)")
    return write_factset_replica(tmp_path_factory.mktemp("csfa") / "data" / "train.parquet", n=4)


def invoke(args: list[str]) -> None:
    """The command as the console runs it; a failure shows its traceback."""
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_replica_reads_back_with_its_facts(replica):
    items = read_factset(replica)
    facts = replica_facts(4)
    assert [i.id for i in items] == [f["id"] for f in facts]
    assert all(len(i.renderings) == 3 for i in items)
    for item, fact in zip(items, facts, strict=True):
        assert (item.correct, item.counterfactual) == (fact["correct"], fact["counterfactual"])
        assert item.correct != item.counterfactual
        for r in item.renderings:  # the timings are the synthesised words' own spans
            assert r.words[-1].end <= r.wave.numel() / 16000 + 1e-6


def test_reproduce_runs_end_to_end_and_caches_units(replica, tmp_path, monkeypatch):
    monkeypatch.setenv("SPEECH_INTERP_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    args = ["reproduce", "--model", "organism", "--data", str(replica), "--out", str(out),
            "--max-words", "6"]  # fmt: skip
    invoke(args)
    protocol = pd.read_csv(out / "protocol.csv")
    paper = protocol[protocol.reading == "paper"]
    assert set(paper.metric) == {"transcription", "next_word"}
    assert set(paper.position_rule) == {"maxpool"} and set(paper.k) == {1, 5, 10}
    ours = protocol[protocol.reading == "ours"]
    assert set(ours.metric) == {"transcription_excess", "transcription_excess_pre_onset",
                                "next_word_excess"}  # fmt: skip
    lens = pd.read_csv(out / "lens.csv")
    # the paper's rows are lens.csv's own maxpool rows, unchanged
    sel = lens[(lens.metric == "transcription") & (lens.position_rule == "maxpool")
               & (lens.vocab == "text") & (lens.words == "all") & (lens.k == 5)]  # fmt: skip
    mine = paper[(paper.metric == "transcription") & (paper.k == 5)]
    assert list(mine.sort_values("layer").value) == pytest.approx(
        list(sel.sort_values("layer").value)
    )
    # the same lens's text ceiling beside the rates, every stream, in lens.csv and protocol.md
    ceiling = lens[(lens.metric == "text_ceiling") & (lens.words == "content") & (lens.k == 5)]
    assert sorted(ceiling.layer) == sorted(sel.layer.unique())
    assert "text ceiling@5 (content)" in (out / "protocol.md").read_text()
    scores = pd.read_csv(out / "knowledge.csv")
    assert len(scores) == 4 * 3 and set(scores.continuation) == {"text"}
    assert set(scores.score) <= {0.0, 0.5, 1.0}
    summary = pd.read_csv(out / "knowledge_summary.csv")
    assert "all" in set(summary.category)
    verdict = json.loads((out / "verdict.json").read_text())
    assert [b["band"] for b in verdict["organism"]["bands"]] == ["1-2", "3-4", "5-5"]
    run = json.loads((out / "run.json").read_text())
    assert run["unit_files"]["organism"]["from_cache"] is False
    assert all("fits" in plan for plan in run["plan"].values()) and (
        out / "report.md"
    ).read_text().startswith("# The paper")
    # the second run reads the units back: no audio model is built
    import speech_interp.organism.train as train

    def no_extractor(*a, **k):
        raise AssertionError("the units should come from the cache")

    monkeypatch.setattr(train, "speech_table", no_extractor)
    # with a second model of the same family: the same units, one data file, a plan per model
    invoke(args[:-2] + ["--model", "organism:planted", "--no-causal", "--out",
                        str(tmp_path / "again")])  # fmt: skip
    again = json.loads((tmp_path / "again" / "run.json").read_text())
    assert [again["unit_files"][m]["from_cache"] for m in ("organism", "organism:planted")] == [
        True,
        True,
    ]
    assert {f["factset"] for f in again["unit_files"].values()} == {"factset.jsonl"}
    assert len(again["plan"]) == 3 and "organism:planted, this run's facts" in again["plan"]
    both = pd.read_csv(tmp_path / "again" / "knowledge.csv")
    assert set(both.model) == {"organism", "organism:planted"}
    assert both[both.model == "organism"].reset_index(drop=True).equals(scores)
    # the units file is the --data format: the lens reads it under the paper's protocol
    lens_out = tmp_path / "lens"
    invoke(["lens", "--model", "organism", "--data", str(out / "factset.jsonl"),
          "--protocol", "paper", "--out", str(lens_out)])  # fmt: skip
    again_protocol = pd.read_csv(lens_out / "protocol.csv")
    assert set(again_protocol.reading) == {"paper", "ours"}


def test_swag_layout_scores_speech_continuations(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEECH_INTERP_CACHE", str(tmp_path / "cache"))
    path = write_factset_replica(tmp_path / "swag.parquet", n=3, layout="swag")
    invoke(["reproduce", "--model", "organism", "--data", str(path), "--out", str(tmp_path / "o"),
          "--no-causal"])  # fmt: skip
    scores = pd.read_csv(tmp_path / "o" / "knowledge.csv")
    assert set(scores.continuation) == {"text", "speech"} and len(scores) == 6


def test_bad_fact_set_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    pd.DataFrame([{"text": "hello"}]).to_parquet(bad)
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "--model", "organism", "--data", str(bad), "--out", str(tmp_path)])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "FactSetError" in err and "columns found: text" in err
