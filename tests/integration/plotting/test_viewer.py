"""The lens viewer in a real browser: headless Chromium opens the page offline, the grid has
layers x tokens cells, a cell's hover text equals the lens's top-k from the Python API, the
screenshot shows the planted model's text stage in colour, and the console stays silent."""

import html
import json
import re
import shutil
import subprocess

import pytest
import torch

import speech_interp as si
from speech_interp.data import TargetResolver, read_utterances, select_sentences, select_split
from speech_interp.lens.grid import lens_grid
from speech_interp.organism import SHIPPED_DATA
from speech_interp.organism.audio import organism_audio
from speech_interp.plotting.viewer import viewer_data, write_viewer

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(*args, timeout=120):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0"]  # fmt: skip
    cmd += list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    _, utts = read_utterances(SHIPPED_DATA)
    utts = select_sentences(select_split(utts, "eval"), "heldout")[:3]
    models = {v: si.load(f"organism:{v}") for v in ("planted", "full")}
    audio = organism_audio(utts)  # espeak-ng re-synthesis ({} without espeak-ng)
    data = viewer_data(models, utts, audio=audio)
    path = write_viewer(tmp_path_factory.mktemp("viewer") / "viewer.html", data)
    return path, utts, models["planted"], data


def test_viewer_data_and_page_are_self_contained(page):
    path, utts, _, data = page
    text = path.read_text()
    assert not re.search(r"(src|href)\s*=\s*[\"']?https?:", text)  # nothing to fetch
    assert "default-src 'none'" in text  # and the page may fetch nothing
    assert list(data["variants"]) == ["planted", "full"] and len(data["utterances"]) == 3
    assert json.loads(re.search(r'id="viewer-data">(.*?)</script>', text, re.S).group(1)) == data
    if shutil.which("espeak-ng"):  # .ci/run installs it: the organism's speech, re-synthesised
        for frame in data["utterances"]:
            audio = frame["audio"]
            assert audio["src"].startswith("data:audio/wav;base64,")
            spans = [s for s in audio["spans"] if s is not None]
            assert len(spans) == sum(w["modality"] == "speech" for w in frame["words"])
            assert all(a < b for a, b in spans) and spans == sorted(spans)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_viewer_in_headless_chromium(page, tmp_path):
    path, utts, (model, layout), data = page
    run = _chromium("--virtual-time-budget=5000", "--dump-dom", path.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    console = [ln for ln in run.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert console == [], console  # no console message, let alone an error
    if shutil.which("espeak-ng"):  # the audio player, and each spoken word plays its span
        assert re.search(r'<audio id="player" controls="" src="data:audio/wav;base64,', run.stdout)
        start, end = (f"{x:g}" for x in data["utterances"][0]["audio"]["spans"][0])  # JS form
        assert f'class="speech playable" data-start="{start}" data-end="{end}"' in run.stdout
    cell = r'<td class="cell[^"]*" data-layer="(\d+)" data-pos="(\d+)"[^>]*title="([^"]*)"'
    cells = re.findall(cell, run.stdout)
    prompt = utts[0].to_prompt(layout, model.tokenizer)
    L, T = si.n_layers(model) + 1, len(prompt)
    assert len(cells) == L * T  # layers x tokens of the first utterance (planted, first model)
    # one cell's hover against the Python API: stream 3 at the first spoken word's last unit
    word = next(i for i, w in enumerate(utts[0].words) if w.modality == "speech")
    pos = int(prompt.word_positions[word][-1])
    target = TargetResolver(model.tokenizer, layout)(utts[0].words[word].word).token_id
    own = torch.full((T,), -1)
    own[prompt.word_positions[word]] = target
    grid = lens_grid(model, layout, prompt, own)
    tok = lambda i: json.dumps(model.tokenizer.decode([i]), ensure_ascii=False)  # noqa: E731
    expected = [f"layer 3, position {pos}: {tok(int(prompt.input_ids[pos]))} (speech, word "
                f"{json.dumps(utts[0].words[word].word)})"]  # fmt: skip
    for i, (t, p) in enumerate(zip(grid.top_ids[3, pos].tolist(), grid.top_probs[3, pos].tolist(),
                                   strict=True)):  # fmt: skip
        expected.append(f"{i + 1}. {tok(t)} p={round(p, 3):.3f} rank {i}")
    expected.append(f"own token {tok(target)}: p={round(float(grid.own_prob[3, pos]), 4):.4f} "
                    f"rank {int(grid.own_rank[3, pos])}")  # fmt: skip
    title = next(html.unescape(t) for la, p, t in cells if (int(la), int(p)) == (3, pos))
    assert title.split("\n") == expected
    # the screenshot: planted's text stage is coloured (own-token probability near 1 at stream 3)
    shot = tmp_path / "viewer.png"
    run = _chromium("--virtual-time-budget=5000", "--window-size=1400,900",
                    f"--screenshot={shot}", path.as_uri())  # fmt: skip
    assert run.returncode == 0 and shot.stat().st_size > 10_000
    import matplotlib.image as mpimg

    rgb = mpimg.imread(shot)[..., :3]
    strong = (rgb[..., 0] > 0.75) & (rgb[..., 1] < 0.45) & (rgb[..., 2] < 0.45)
    assert strong.sum() > 500  # dark-red cells: high own-token probability
