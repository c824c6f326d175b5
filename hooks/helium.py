"""TransformerLens adapter for Kyutai's Helium (``HeliumForCausalLM``), the text backbone of the
Moshi speech-text model, which TransformerLens 4.3 does not support.

Helium's decoder is Llama-shaped (RMSNorm, gated MLP, ``model.layers`` /
``model.norm`` / ``lm_head``), so the Llama adapter's component mapping applies; only its rotary
convention differs. Registered through
the ``transformer_lens.architectures`` entry point in pyproject.toml, so a fresh process running
``TransformerBridge.boot_transformers`` on a Helium checkpoint finds it without imports.
"""

from transformer_lens.model_bridge.supported_architectures.llama import LlamaArchitectureAdapter


class HeliumArchitectureAdapter(LlamaArchitectureAdapter):
    """Llama adapter with Helium's rotary convention.

    Helium rotates adjacent element pairs (0,1), (2,3), ... with cos/sin halves expanded by
    ``repeat_interleave``, not Llama's split halves: TransformerLens calls that convention
    ``rotary_adjacent_pairs`` (GLM/ERNIE). Without it, residuals drift from HF's after layer 0.
    """

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.cfg.rotary_adjacent_pairs = True


def register_entry_point_adapters() -> None:
    """Make adapters found through the entry point visible to ``boot_transformers``.

    TransformerLens 4.3 discovers entry-point adapters in ``ArchitectureAdapterFactory`` but
    ``determine_architecture_from_hf_config`` only accepts names in the static
    ``SUPPORTED_ARCHITECTURES`` dict, so booting such a model fails before discovery runs. We
    copy the discovered adapters into that dict (never overriding a native one).
    """
    from transformer_lens.factories import architecture_adapter_factory as factory

    factory.ArchitectureAdapterFactory.discover_entry_points()
    for name, adapter in factory.ArchitectureAdapterFactory._adapters.items():
        factory.SUPPORTED_ARCHITECTURES.setdefault(name, adapter)
