"""The demo's report: ``report.md`` and the rows of ``best_layers.json``, formatted from the
outcomes :mod:`speech_interp.organism.demo` computes (tables: best-layer transcription per
position rule, next word, spoken knowledge, the knob comparisons, lens quality, verdicts)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from speech_interp.artifacts import write_text
from speech_interp.organism import EXTRA_SEEDS, shipped_name

# The knob comparisons of the report: ``full`` against each knob variant, seed by seed.
KNOBS: tuple[str, ...] = ("random-init", "no-interleave")


def best_intermediate(excess: pd.DataFrame) -> pd.Series:
    """The row of the largest excess among layers 1..L-1 (the output layer L is excluded)."""
    last = int(excess["layer"].max())
    inner = excess[(excess["layer"] > 0) & (excess["layer"] < last)]
    return inner.loc[inner["value"].idxmax()]


def _rate(summary: pd.DataFrame, metric: str, layer: int, rule: str) -> pd.Series:
    sel = summary[
        (summary["metric"] == metric)
        & (summary["k"] == 5)
        & (summary["vocab"] == "text")
        & (summary["words"] == "content")
        & (summary["position_rule"] == rule)
        & (summary["layer"] == layer)
    ]
    return sel.iloc[0]


def _triple(row: pd.Series) -> list:
    return [row["value"], row["ci_low"], row["ci_high"]]


def report_rows(variant: str, result, seed: int, excess: pd.DataFrame | None = None) -> dict:
    """Best-layer content-word transcription@5 (``after_uniqueness``) and next_word@5 (``last``)
    with the drawn and expected controls, pre-onset and the excesses with CIs. The best layer is
    the intermediate layer of largest excess over the control. ``excess``: the transcription
    excess over the control of ``result`` when already computed."""
    from speech_interp.lens import excess_over_control

    row: dict = {"variant": variant}
    for metric, rule in (("transcription", "after_uniqueness"), ("next_word", "last")):
        ex = excess if metric == "transcription" and excess is not None else None
        if ex is None:
            ex = excess_over_control(result.words, metric=metric, k=5, seed=seed)
        best = best_intermediate(ex)
        layer = int(best["layer"])
        entry = {
            "layer": layer,
            "position_rule": rule,
            "rate": _triple(_rate(result.summary, metric, layer, rule)),
            "control": _triple(_rate(result.summary, f"{metric}_control", layer, rule)),
            "excess": _triple(best),
            "n": int(best["n"]),
        }
        if metric == "transcription":
            summary = result.summary
            entry["expected_control"] = _triple(
                _rate(summary, "transcription_control_expected", layer, rule)
            )
            entry["pre_onset"] = _triple(_rate(summary, metric, layer, "pre_onset"))
            pre = excess_over_control(result.words, k=5, baseline="pre_onset", seed=seed)
            entry["excess_pre_onset"] = _triple(pre[pre["layer"] == layer].iloc[0])
            entry["any"] = _triple(_rate(summary, metric, layer, "any"))
            entry["maxpool"] = _triple(_rate(summary, metric, layer, "maxpool"))
        row[metric] = entry
    return row


def _fmt(triple) -> str:
    return f"{triple[0]:.2f} [{triple[1]:.2f}, {triple[2]:.2f}]"


def knob_rows(
    words: dict, rows: dict, seed: int, *, name=shipped_name, seeds=(0, *EXTRA_SEEDS), knobs=KNOBS,
    full: str = "full",
) -> list[dict]:  # fmt: skip
    """Per seed: the ``full`` variant's transcription excess minus each knob variant's (each at
    its own best layer), paired bootstrap over word types; ``name(variant, seed)`` is the models'
    naming (v2's :func:`shipped_name` by default)."""
    from speech_interp.lens.metrics import excess_difference

    out = []
    for s in seeds:
        model = name(full, s)
        for knob in knobs:
            other = name(knob, s)
            if model not in words or other not in words:
                continue
            la, lb = rows[model]["transcription"]["layer"], rows[other]["transcription"]["layer"]
            mean, lo, hi, n = excess_difference(words[model], words[other], la, lb, seed=seed)
            out.append({"seed": s, "full": model, "knob": other, "layers": [la, lb],
                        "difference": [mean, lo, hi], "n": n})  # fmt: skip
    return out


def knowledge_markdown(knowledge: list[dict], rows: dict, knobs: list[dict]) -> list[str]:
    from speech_interp.organism.evaluate import SPOKEN_KNOWLEDGE

    lines = [
        "",
        "## Spoken knowledge beside transcription",
        "",
        "Top-1 recall of a fact's value after the spoken entity and the relation words in text",
        '("the otter" spoken, "lives in the" in text), for facts only ever seen in text during',
        "training (spoken knowledge) and facts also seen after the spoken entity; 95% CIs",
        "resample entities. Transcription: the best-layer excess over the control (above).",
        "Recognition gate (`speech_interp.organism.hearing`): does the model hear its content",
        "words? The share of held-out recurrences where the word's later text is more probable",
        "after its own speech than after a same-category control's.",
        "",
        "| model | spoken knowledge (text-only facts) | chance | facts seen in speech | "
        "from text | transcription excess | hears: recognition gate [CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for k in knowledge:
        spoken = k.get(SPOKEN_KNOWLEDGE)
        seen = k.get("fact_noun_spoken/seen_in_speech")
        text = k.get("fact_text/text_only_fact")
        if spoken is None:
            continue
        ex = rows[k["variant"]]["transcription"]["excess"]
        gate = k.get("gate")
        heard = "n/a" if gate is None else f"{'yes' if gate[3] else 'no'} {_fmt(gate[:3])}"
        lines.append(
            f"| {k['variant']} | {_fmt(spoken['value'])} | {spoken['chance']:.3f} | "
            f"{_fmt(seen['value']) if seen else 'n/a'} | {_fmt(text['value']) if text else 'n/a'}"
            f" | {_fmt(ex)} | {heard} |"
        )
    if knobs:
        lines += [
            "",
            "The knobs, seed by seed: `full`'s transcription excess minus the knob variant's",
            "(each at its own best layer; paired bootstrap over word types):",
            "",
            "| seed | full | knob variant | layers | full - knob [CI] | n |",
            "|---|---|---|---|---|---|",
        ]
        for k in knobs:
            lines.append(
                f"| {k['seed']} | {k['full']} | {k['knob']} | {k['layers'][0]}, {k['layers'][1]}"
                f" | {_fmt(k['difference'])} | {k['n']} |"
            )
    return lines


def quality_markdown(
    rows: list[dict], quality: dict[str, pd.DataFrame], ceilings: dict | None = None
) -> list[str]:
    """The lens's quality at each variant's reported layer and its uninformative layers; with
    ``ceilings`` (variant -> text-ceiling rows), what the lens reads of the same words written."""
    from speech_interp.lens.quality import uninformative_layers

    lines = [
        "",
        "Lens quality at the reported layer (at the spoken words' positions, full vocabulary):",
        "KL(model's final distribution || lens distribution) in nats, and how often the lens",
        "top-1 is the model's own top-1 against a constant guess of its commonest top-1. A layer",
        "where the lens does no better than that guess is uninformative (rule in",
        "`speech_interp.lens.quality`), and its rates do not read the model.",
        "",
        "| variant | layer | KL to final | top-1 agreement | constant guess | "
        "uninformative layers |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        q = quality[row["variant"]]
        layer = row["transcription"]["layer"]
        at = q[q["layer"] == layer].iloc[0]
        bad = ", ".join(str(x) for x in uninformative_layers(q)) or "none"
        lines.append(
            f"| {row['variant']} | {layer} | {at['kl_to_final']:.3f} | "
            f"{at['top1_agreement']:.3f} | {at['constant_guess']:.3f} | {bad} |"
        )
    return lines + (ceiling_markdown(rows, ceilings) if ceilings else [])


def ceiling_markdown(rows: list[dict], ceilings: dict[str, pd.DataFrame]) -> list[str]:
    """The text ceiling at each variant's reported layer and its streams blind to words."""
    from speech_interp.lens.ceiling import CEILING_FLOOR, blind_streams

    lines = [
        "",
        "Text ceiling: the same lens on the same sentences *written* as text, the current word",
        "read at each written word's last token (content words, top-5, text vocabulary). A stream",
        f"whose ceiling is below {CEILING_FLOOR} is blind to written words (rule in",
        "`speech_interp.lens.ceiling`): the logit lens reads the next token, so a transcription",
        "rate there says nothing about a text stage; `speech-interp lens --lens current` reads",
        "the word being read.",
        "",
        "| variant | layer | text ceiling | streams blind to words |",
        "|---|---|---|---|",
    ]
    for row in rows:
        c = ceilings[row["variant"]]
        layer = row["transcription"]["layer"]
        at = c[(c.metric == "text_ceiling") & (c.k == 5) & (c.words == "content")
               & (c.layer == layer)].iloc[0]  # fmt: skip
        blind = ", ".join(str(x) for x in blind_streams(c)) or "none"
        lines.append(
            f"| {row['variant']} | {layer} | {_fmt((at.value, at.ci_low, at.ci_high))} | {blind} |"
        )
    return lines


SEEDS_NOTE = (
    "`full` at three training seeds (`full`, `full-seed1`, `full-seed2`); the controls at\nseed 0."
)


def verdict_markdown(all_verdicts: dict, note: str = SEEDS_NOTE) -> list[str]:
    lines = [
        "",
        "## Causal verdict (text-direction ablation vs 20 random directions, speech metric)",
        "",
        "| variant | band | verdict | decodable: excess over control [CI] | over pre-onset [CI] "
        "| damage: text | random mean | text - random [CI] | effect size |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, content in all_verdicts.items():
        for b in content["bands"]:
            d, c = b["decodable_rate"], b["causal_effect"]

            def f(x):
                return "n/a" if x is None else f"{x:.3f}"

            lines.append(
                f"| {variant} | {b['band']} | **{b['verdict']}** | {f(d.get('excess'))} "
                f"[{f(d.get('ci_low'))}, {f(d.get('ci_high'))}] | {f(d.get('excess_pre_onset'))} "
                f"[{f(d.get('pre_onset_ci_low'))}, {f(d.get('pre_onset_ci_high'))}] | "
                f"{f(c.get('text_damage'))} | "
                f"{f(c.get('control_mean'))} | {f(c.get('effect'))} [{f(c.get('ci_low'))}, "
                f"{f(c.get('ci_high'))}] | {f(c.get('effect_size'))} |"
            )
    return [*lines, "", note]


def write_report(
    out: Path,
    rows: list[dict],
    bands: pd.DataFrame,
    split: str,
    all_verdicts: dict,
    seen_rows: list[dict] | None = None,
    knowledge: list[dict] | None = None,
    knobs: list[dict] | None = None,
    quality: dict[str, pd.DataFrame] | None = None,
    ceilings: dict[str, pd.DataFrame] | None = None,
) -> Path:
    lines = [
        "# speech-interp demo: the shipped organism",
        "",
        f"Logit lens on the shipped evaluation set ({split} split, held-out sentences), spoken",
        "content words, top-5 over the text vocabulary, 95% CIs resampling word types.",
        "Transcription reads a word's positions at or after its uniqueness point",
        "(`after_uniqueness`) and must beat both its control word (matched on category and",
        "frequency) and what the model predicted before the word began (`pre_onset`). The best",
        "layer is the intermediate layer (not the input, not the output) of largest excess over",
        "the control.",
        "",
        "| variant | layer | transcription | control | expected control | pre-onset | "
        "excess over control | excess over pre-onset | n |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r = row["transcription"]
        lines.append(
            f"| {row['variant']} | {r['layer']} | {_fmt(r['rate'])} | {_fmt(r['control'])} | "
            f"{_fmt(r['expected_control'])} | {_fmt(r['pre_onset'])} | {_fmt(r['excess'])} | "
            f"{_fmt(r['excess_pre_onset'])} | {r['n']} |"
        )
    if quality:
        lines += quality_markdown(rows, quality, ceilings)
    lines += [
        "",
        "The same words and layer under the other position rules (`any`: a hit at any of the",
        "word's positions, including before its uniqueness point; `maxpool`: logits max-pooled",
        "over the word's positions), and the next word (at the word's last position):",
        "",
        "| variant | transcription, any | transcription, maxpool | next-word layer | next word | "
        "control | excess | n |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r, n = row["transcription"], row["next_word"]
        lines.append(
            f"| {row['variant']} | {_fmt(r['any'])} | {_fmt(r['maxpool'])} | {n['layer']} | "
            f"{_fmt(n['rate'])} | {_fmt(n['control'])} | {_fmt(n['excess'])} | {n['n']} |"
        )
    if seen_rows:
        lines += [
            "",
            "Reported apart: the sentences marked `seen_in_training` (the fact sentences, which",
            "training also contains), same rules:",
            "",
            "| variant | layer | transcription | control | pre-onset | excess over control | n |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in seen_rows:
            r = row["transcription"]
            lines.append(
                f"| {row['variant']} | {r['layer']} | {_fmt(r['rate'])} | {_fmt(r['control'])} | "
                f"{_fmt(r['pre_onset'])} | {_fmt(r['excess'])} | {r['n']} |"
            )
    if knowledge:
        lines += knowledge_markdown(knowledge, {r["variant"]: r for r in rows}, knobs or [])
    lines += ["", "Phase bands (rules in phases.json):", ""]
    for _, b in bands.iterrows():
        span = "none" if pd.isna(b["first_layer"]) else f"{b['first_layer']}-{b['last_layer']}"
        lines.append(f"- {b['model']}: {b['phase']} {span}")
    if all_verdicts:
        lines += verdict_markdown(all_verdicts)
    lines += [
        "",
        "![phase curves](phase_curves.png)",
        "",
        "The lens token by token: open [viewer.html](viewer.html) (every variant, the first",
        "utterances, hover a cell for its top-5 text tokens, click a word to hear it).",
    ]
    path = out / "report.md"
    return write_text(path, "\n".join(lines) + "\n")
