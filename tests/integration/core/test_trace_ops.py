"""The trace-side helpers travel to the server: without registration the simulated server cannot
rebuild a trace that calls them; registered, the trace runs and equals the local run."""

import pytest
import torch
from cloudpickle.cloudpickle import _PICKLE_BY_VALUE_MODULES

from speech_interp.core.edits import Edit, Readout, run_edited
from speech_interp.core.trace_ops import ship_with_remote_traces

pytestmark = pytest.mark.integration
TRACE_OPS = "speech_interp.core.trace_ops"


def _inputs(model):
    ids = torch.tensor([[1, 5, 9, 14, 3, 7], [2, 6, 8, 11, 4, 10]])
    edits = [Edit.add(0, "mlp_out", [0, 1], [2, 3], torch.ones(2, model.config.hidden_size))]
    return ids, edits, Readout.same(2, [3, 4], [5, 6])


def test_unregistered_trace_fails_on_the_simulated_server(models, monkeypatch):
    model = models["nnsight"]
    ids, edits, readout = _inputs(model)
    import speech_interp.core.remote as remote

    monkeypatch.setattr(remote, "resolve_remote", lambda r, b: r)  # skip the registration
    import speech_interp.core.edits as edits_mod

    monkeypatch.setattr(edits_mod, "resolve_remote", lambda r, b: r)
    registered = set(_PICKLE_BY_VALUE_MODULES)
    _PICKLE_BY_VALUE_MODULES.difference_update({TRACE_OPS, "speech_interp"})
    try:
        with pytest.raises(ModuleNotFoundError, match="speech_interp"):
            run_edited(model, ids, edits, readout, remote="local")
    finally:
        _PICKLE_BY_VALUE_MODULES.update(registered)


def test_registered_trace_runs_and_equals_local(models):
    model = models["nnsight"]
    ids, edits, readout = _inputs(model)
    ship_with_remote_traces()
    assert TRACE_OPS in _PICKLE_BY_VALUE_MODULES
    local = run_edited(model, ids, edits, readout)
    simulated = run_edited(model, ids, edits, readout, remote="local")
    tl = run_edited(models["tl"], ids, edits, readout)
    assert torch.allclose(local, simulated, atol=1e-6) and torch.allclose(local, tl, atol=1e-5)
