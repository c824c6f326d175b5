"""The organism's model card: every figure recomputed from the saved weights and eval file.

Tables (markdown) per variant: parameters and training time, held-out loss per modality,
behavioural probes (fact recall, spoken knowledge, transfer) with CIs, and the logit lens per layer:
content-word transcription@5 (text vocab, at or after the word's uniqueness point) against its
matched control and its own pre-onset rate, the paired excesses with CIs, and next_word@5
against its control, in training and held-out voices, on held-out sentences only; and the logit
lens on the same sentences as text (current and next word per stream, :mod:`text_lens`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from speech_interp.data import read_utterances, select_sentences
from speech_interp.lens import excess_over_control, phase_bands, run_lens
from speech_interp.models import load

SPLITS = {"eval": "training voices, held-out sentences", "heldout_voice": "held-out voices"}


def lens_tables(model, layout, utts, name: str, seed: int) -> dict[str, pd.DataFrame]:
    """Per split: one row per layer with transcription / next-word rates, controls, excess
    (``utts``: the held-out sentences of every split)."""
    out = {}
    for split in SPLITS:
        result = run_lens(
            model, layout, [u for u in utts if u.split == split], seed=seed, progress=False,
            model_id=name,
        )  # fmt: skip
        s = result.summary
        sel = (s["k"] == 5) & (s["vocab"] == "text") & (s["words"] == "content")
        table = {}
        for metric, rule in (
            ("transcription", "after_uniqueness"),
            ("transcription_control", "after_uniqueness"),
            ("next_word", "last"),
            ("next_word_control", "last"),
        ):
            rows = s[sel & (s["metric"] == metric) & (s["position_rule"] == rule)]
            table[metric] = rows.set_index("layer")[["value", "ci_low", "ci_high", "n"]]
        cols = ["value", "ci_low", "ci_high", "n"]
        pre = s[sel & (s["metric"] == "transcription") & (s["position_rule"] == "pre_onset")]
        table["transcription_pre_onset"] = pre.set_index("layer")[cols]
        for metric in ("transcription", "next_word"):
            ex = excess_over_control(result.words, metric=metric, k=5, seed=seed)
            table[f"{metric}_excess"] = ex.set_index("layer")[cols]
        ex = excess_over_control(result.words, k=5, baseline="pre_onset", seed=seed)
        table["transcription_excess_pre_onset"] = ex.set_index("layer")[cols]
        frame = pd.concat(table, axis=1)
        frame.attrs["phases"] = phase_bands(result, seed=seed).to_dict("records")
        out[split] = frame
    return out


def _fmt(row, metric: str) -> str:
    v, lo, hi = row[(metric, "value")], row[(metric, "ci_low")], row[(metric, "ci_high")]
    return "n/a" if pd.isna(v) else f"{v:.2f} [{lo:.2f}, {hi:.2f}]"


def lens_markdown(frame: pd.DataFrame) -> str:
    lines = [
        "| layer | transcription@5 | control | pre-onset | excess over control | "
        "excess over pre-onset | next_word@5 | control | excess |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for layer, row in frame.iterrows():
        cells = [
            _fmt(row, m)
            for m in (
                "transcription",
                "transcription_control",
                "transcription_pre_onset",
                "transcription_excess",
                "transcription_excess_pre_onset",
                "next_word",
                "next_word_control",
                "next_word_excess",
            )
        ]
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    n = int(frame[("transcription", "n")].iloc[0])
    lines.append(f"\nn = {n} spoken content words. Phase bands (rule in `lens.phase_bands`): ")
    for p in frame.attrs["phases"]:
        band = "none" if p["first_layer"] is None else f"{p['first_layer']}-{p['last_layer']}"
        lines.append(f"{p['phase']}: {band}; ")
    return "\n".join(lines)


def probes_markdown(probes: list[dict]) -> str:
    lines = ["| probe | voices | k | accuracy [95% CI] | n | chance |", "|---|---|---|---|---|---|"]
    for p in probes:
        chance = "" if pd.isna(p["chance"]) else f"{p['chance']:.3f}"
        lines.append(
            f"| {p['probe']} | {p['voices']} | {p['k']} | {p['value']:.2f} "
            f"[{p['ci_low']:.2f}, {p['ci_high']:.2f}] | {p['n']} | {chance} |"
        )
    return "\n".join(lines)


def text_lens_markdown(model, layout, utts, seed: int) -> str:
    """The logit lens on the held-out sentences of the eval split rendered as text
    (:mod:`text_lens`)."""
    from speech_interp.lens.text_input import text_input_lens

    utts = [u for u in utts if u.split == "eval"]
    frame = text_input_lens(model, layout, utts, seed=seed)
    lines = ["| layer | current word@5 | next word@5 |", "|---|---|---|"]
    for layer, group in frame.groupby("layer"):
        cells = {r["target"]: f"{r['value']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
                 for _, r in group.iterrows()}  # fmt: skip
        lines.append(f"| {layer} | {cells.get('current', 'n/a')} | {cells.get('next', 'n/a')} |")
    n = int(frame["n"].max())
    lines.append(f"\nn = {n} content words (their own token; the next word where there is one).")
    return "\n".join(lines)


def recurrence_markdown(n: int = 5000) -> str:
    """How often a spoken content word's own text is in the same training sequence (the
    ``interleaved`` mix of seed 0, drawn as training draws it)."""
    from speech_interp.hooks import ORGANISM
    from speech_interp.organism import ORGANISM_DIR

    from .recurrence import recurrence_rates
    from .train import OrganismConfig, build_tokenizer, speech_table, stage_sampler

    cfg = OrganismConfig()
    tok, _ = build_tokenizer(cfg.n_units, cfg.lexicon)
    table = speech_table(cfg, 0, ORGANISM_DIR, progress=False)  # the shipped unit table
    sampler = stage_sampler(cfg, ORGANISM.bind(tok), tok, table, "interleaved", seed=0)
    r = recurrence_rates(sampler, n)
    return (
        f"Recurrence in training (the `interleaved` mix, {r['sequences']:,} sequences drawn as "
        f"seed 0 draws them): {r['share_of_sequences']:.1%} of sequences hold a spoken content "
        f"word whose own text is also in the sequence; {r['share_of_spoken_words']:.1%} of "
        f"{r['spoken_words']:,} spoken content-word occurrences have their text in the same "
        "sequence (an entity named twice, once spoken and once written).\n"
    )


def variant_section(vdir: Path, data: Path, seed: int) -> str:
    info = json.loads((vdir / "organism.json").read_text())
    t = info["timings"]
    parts = [
        f"### `{vdir.name}`\n",
        f"Parameters: {info['n_params']:,}. Training: text stage {t.get('text_stage_s', 0):.0f} s "
        f"(shared by the text-initialised variants), mixed stage {t['mixed_stage_s']:.0f} s. "
        f"Final mixed-stage training loss {info['final_mixed_loss']:.3f}.\n",
        "Held-out loss (mean nats per token):\n",
        "| modality | voices | loss | sentences |",
        "|---|---|---|---|",
    ]
    for r in info["heldout_loss"]:
        parts.append(f"| {r['modality']} | {r['voices']} | {r['loss']:.4f} | {r['n']} |")
    parts += ["", "Probes:\n", probes_markdown(info["probes"]), ""]
    model, layout = load(str(vdir), backend="tl")
    _, utts = read_utterances(data)
    utts = select_sentences(utts, "heldout")
    for split, frame in lens_tables(model, layout, utts, vdir.name, seed).items():
        parts += [f"Logit lens, content words, {SPLITS[split]}:\n", lens_markdown(frame), ""]
    parts += [
        "Logit lens on text input (the held-out sentences as text; does the text pathway keep "
        "the current word decodable?):\n",
        text_lens_markdown(model, layout, utts, seed),
        "",
    ]
    return "\n".join(parts)
