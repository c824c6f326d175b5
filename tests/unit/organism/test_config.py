"""Recipe settings from the command line (``speech-interp organism train --set key=value``)."""

import pytest

from speech_interp.organism import VARIANTS
from speech_interp.organism.train import VARIANT_SPECS, OrganismConfig


def test_overrides_take_the_fields_types():
    cfg = OrganismConfig().with_overrides(["d_model=192", "mix_lr=5e-4", "p_second=0.25"])
    assert (cfg.d_model, cfg.mix_lr, cfg.p_second) == (192, 5e-4, 0.25)
    assert isinstance(cfg.d_model, int) and cfg.n_layers == OrganismConfig().n_layers


@pytest.mark.parametrize("bad", ["width=3", "d_model", "d_model=wide"])
def test_bad_override_is_refused(bad):
    with pytest.raises(ValueError):
        OrganismConfig().with_overrides([bad])


def test_every_variant_is_a_cell_of_the_knob_grid():
    assert tuple(VARIANT_SPECS) == (*VARIANTS, "planted-text")  # v4's control, recipe only
    cells = {(s.init, s.mix) for s in VARIANT_SPECS.values() if not s.control}
    assert VARIANT_SPECS["planted-text"] == VARIANT_SPECS["planted"].__class__(
        "text", "interleaved", "planted-text"
    )
    assert cells == {
        (i, m) for i in ("text", "random") for m in ("interleaved", "separate", "speech-only")
    }
    assert (
        VARIANT_SPECS["random-init"].init == "random"
        and VARIANT_SPECS["random-init"].mix == "interleaved"
    )
    assert (
        VARIANT_SPECS["no-interleave"].init == "text"
        and VARIANT_SPECS["no-interleave"].mix == "separate"
    )
