"""AdaLoRA adapters rewritten as plain LoRA adapters, so that vLLM (which serves LoRA only) can
serve them. The result is exact: the same weight update in every adapted layer.

peft's AdaLoRA layer (``peft/tuners/adalora/layer.py``, ``SVDLinear.get_delta_weight`` and
``forward``) adds to each adapted weight::

    delta_W = B @ (A * E) * scaling / (ranknum + 1e-5)     # A (r, in), E (r, 1), B (out, r)

with ``scaling = lora_alpha`` (not ``lora_alpha / r``) and ``ranknum`` the initial rank
``init_r``. ``ranknum`` is not saved by peft >= 0.18; when peft loads a pruned adapter it resizes
the layer to the kept rank but copies the old ``ranknum`` back
(``AdaLoraModel.resize_modules_by_rank_pattern``), so ``init_r`` stays the divisor. A file that
does store ``ranknum`` tensors (older peft) is read with them. peft's LoRA layer adds
``B' @ A' * lora_alpha' / r'``. So, per layer:

- ``A' = A * E``, without the rows whose singular value is 0 (pruned: they add nothing; the
  rows dropped by the saved ``rank_pattern`` are already absent from the file);
- ``B' = B * scaling / (ranknum + 1e-5)``;
- both zero-padded to one rank ``r'``, the smallest of vLLM's allowed ``max_lora_rank`` values
  that holds the largest kept rank; ``lora_alpha' = r'``, so LoRA's scaling is exactly 1.

Only linear layers exist in AdaLoRA for causal LMs (peft refuses embeddings); ``fan_in_fan_out``
(GPT-2 ``Conv1D``) carries over unchanged because both methods store ``A`` as (r, in).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from llmrec.io import atomic_dir
from llmrec.models.adapters import (
    META_FILE,
    AdapterRecord,
    read_adapter_record,
    write_adapter_record,
)

logger = logging.getLogger(__name__)

#: vLLM's allowed ``max_lora_rank`` values (``vllm/config/lora.py``, ``MaxLoRARanks``).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
LEGACY_WEIGHTS_FILE = "adapter_model.bin"
_PARTS = ("lora_A", "lora_B", "lora_E", "ranknum")


def vllm_rank(rank: int) -> int:
    """The smallest rank vLLM accepts as ``max_lora_rank`` that holds ``rank``."""
    for allowed in VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise ValueError(
        f"rank {rank} is over vLLM's largest max_lora_rank {VLLM_LORA_RANKS[-1]}; "
        "serve this adapter with backend: transformers"
    )


def read_adapter_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no peft adapter (no {CONFIG_FILE})")
    return json.loads(path.read_text())


def adalora_to_lora(src_dir: str | os.PathLike[str], dst_dir: str | os.PathLike[str]) -> Path:
    """Write the AdaLoRA adapter in ``src_dir`` as an equivalent plain LoRA adapter in ``dst_dir``.

    ``dst_dir`` appears whole or not at all. ``llmrec_adapter.json`` is copied with ``method``
    ``"lora"`` and the original method, adapter settings, source folder and kept ranks under
    ``converted_from``. Raises ``ValueError`` for anything but an AdaLoRA adapter.
    """
    import torch

    src, dst = Path(src_dir), Path(dst_dir)
    if src.resolve() == dst.resolve():
        raise ValueError(f"adalora_to_lora would overwrite its source {src}; give another dst_dir")
    config = read_adapter_config(src)
    _check_convertible(config, src)
    tensors = _load_tensors(src)
    layers = _group_by_layer(tensors, src)
    _check_rank_pattern(config.get("rank_pattern"), layers, src)

    init_r = int(config["init_r"])
    scaling = float(config["lora_alpha"])
    kept: dict[str, tuple[Any, Any]] = {}
    for prefix, parts in layers.items():
        a, b, e = parts["lora_A"], parts["lora_B"], parts["lora_E"]
        ranknum = float(parts["ranknum"].reshape(-1)[0]) if "ranknum" in parts else float(init_r)
        keep = (e.reshape(-1) != 0).nonzero().reshape(-1)
        a64, b64, e64 = a.double()[keep], b.double()[:, keep], e.double()[keep]
        kept[prefix] = (a64 * e64, b64 * (scaling / (ranknum + 1e-5)))  # (k, in), (out, k)
    ranks = {prefix: int(a.shape[0]) for prefix, (a, _) in kept.items()}
    rank = vllm_rank(max([1, *ranks.values()]))

    out: dict[str, Any] = {}
    for prefix, (a, b) in kept.items():
        dtype = layers[prefix]["lora_A"].dtype
        padded_a = torch.zeros(rank, a.shape[1], dtype=torch.float64)
        padded_b = torch.zeros(b.shape[0], rank, dtype=torch.float64)
        padded_a[: a.shape[0]] = a
        padded_b[:, : b.shape[1]] = b
        out[f"{prefix}.lora_A.weight"] = padded_a.to(dtype).contiguous()
        out[f"{prefix}.lora_B.weight"] = padded_b.to(dtype).contiguous()

    lora_config = _lora_config(config, rank)
    record = _converted_record(src, rank, ranks)
    from safetensors.torch import save_file

    with atomic_dir(dst) as tmp:
        save_file(out, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        lora_config.save_pretrained(str(tmp))
        if record is not None:
            write_adapter_record(tmp, record)
    logger.info(
        "converted AdaLoRA %s -> LoRA %s: %d layers, kept ranks %d..%d, padded to r=%d",
        src,
        dst,
        len(ranks),
        min(ranks.values(), default=0),
        max(ranks.values(), default=0),
        rank,
    )
    return dst


# --------------------------------------------------------------------------- pieces
def _check_convertible(config: Mapping[str, Any], src: Path) -> None:
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type != "ADALORA":
        raise ValueError(
            f"{src} holds a {peft_type or 'unknown'} adapter; adalora_to_lora converts AdaLoRA "
            "adapters only (a LoRA adapter is served as it is)"
        )
    if not float(config.get("lora_alpha", 0)) > 0:
        raise ValueError(f"{src}: lora_alpha must be positive, got {config.get('lora_alpha')!r}")
    if config.get("bias", "none") != "none":
        raise ValueError(
            f"{src}: bias={config['bias']!r} trains the base layers' biases, which a LoRA adapter "
            "cannot carry (vLLM refuses adapter biases); serve it with backend: transformers"
        )
    if config.get("modules_to_save"):
        raise ValueError(
            f"{src}: modules_to_save={config['modules_to_save']} holds full trained modules, "
            "which vLLM cannot serve; serve it with backend: transformers"
        )


def _load_tensors(src: Path) -> dict[str, Any]:
    if (src / WEIGHTS_FILE).is_file():
        from safetensors.torch import load_file

        return load_file(str(src / WEIGHTS_FILE))
    if (src / LEGACY_WEIGHTS_FILE).is_file():
        import torch

        return torch.load(str(src / LEGACY_WEIGHTS_FILE), map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{src} holds no adapter weights ({WEIGHTS_FILE})")


def _group_by_layer(tensors: Mapping[str, Any], src: Path) -> dict[str, dict[str, Any]]:
    """``{layer prefix: {"lora_A": ..., "lora_B": ..., "lora_E": ..., ["ranknum": ...]}}``.

    peft saves AdaLoRA tensors as ``<layer>.lora_A`` (the adapter name removed); anything else
    (embeddings, saved modules) cannot become a LoRA adapter and is refused by name."""
    layers: dict[str, dict[str, Any]] = {}
    unknown = []
    for key, value in tensors.items():
        prefix, _, part = key.rpartition(".")
        if part not in _PARTS:
            unknown.append(key)
            continue
        layers.setdefault(prefix, {})[part] = value
    if unknown:
        raise ValueError(
            f"{src}: tensors that are not AdaLoRA's lora_A/lora_B/lora_E: {unknown[:5]}; "
            "only linear-layer AdaLoRA adapters can be converted"
        )
    for prefix, parts in layers.items():
        missing = [p for p in ("lora_A", "lora_B", "lora_E") if p not in parts]
        if missing:
            raise ValueError(f"{src}: layer {prefix} lacks {missing}")
        a, b, e = parts["lora_A"], parts["lora_B"], parts["lora_E"]
        if a.dim() != 2 or b.dim() != 2 or e.shape[0] != a.shape[0] or b.shape[1] != a.shape[0]:
            raise ValueError(
                f"{src}: layer {prefix} has shapes A {tuple(a.shape)}, E {tuple(e.shape)}, "
                f"B {tuple(b.shape)}; expected A (r, in), E (r, 1), B (out, r)"
            )
    if not layers:
        raise ValueError(f"{src}: the adapter holds no AdaLoRA layers")
    return layers


def _check_rank_pattern(
    pattern: Mapping[str, Any] | None, layers: Mapping[str, Mapping[str, Any]], src: Path
) -> None:
    """The saved tensors must hold as many ranks as the saved ``rank_pattern`` keeps.

    peft keys the pattern by ``<layer path>.lora_E`` (adapter name removed, path from the
    transformers model), the tensors by ``base_model.model.<layer path>``."""
    for key, mask in (pattern or {}).items():
        layer = key.rsplit(".lora_E", 1)[0]
        prefix = next((p for p in layers if p == layer or p.endswith(f".{layer}")), None)
        if prefix is None:
            continue  # a layer whose weights were not saved: nothing to convert
        rows = int(layers[prefix]["lora_A"].shape[0])
        if sum(bool(m) for m in mask) != rows:
            raise ValueError(
                f"{src}: rank_pattern keeps {sum(bool(m) for m in mask)} ranks of {layer} but the "
                f"saved tensors hold {rows}; the adapter files do not belong together"
            )


def _lora_config(config: Mapping[str, Any], rank: int) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=rank,  # scaling lora_alpha / r == 1: AdaLoRA's factor is folded into B
        lora_dropout=float(config.get("lora_dropout", 0.0)),
        target_modules=config.get("target_modules"),
        exclude_modules=config.get("exclude_modules"),
        layers_to_transform=config.get("layers_to_transform"),
        layers_pattern=config.get("layers_pattern"),
        fan_in_fan_out=bool(config.get("fan_in_fan_out", False)),
        bias="none",
        task_type=config.get("task_type"),
        base_model_name_or_path=config.get("base_model_name_or_path"),
        revision=config.get("revision"),
        inference_mode=True,
    )


def _converted_record(src: Path, rank: int, ranks: Mapping[str, int]) -> AdapterRecord | None:
    if not (src / META_FILE).is_file():
        logger.warning("%s has no %s; the converted adapter has none either", src, META_FILE)
        return None
    record = read_adapter_record(src)
    original = dict(record.adapter or {})
    converted_from = {
        "method": record.method or "adalora",
        "adapter": original,
        "source": str(src),
        "ranks": dict(ranks),
    }
    return replace(
        record,
        method="lora",
        adapter={**original, "method": "lora", "r": rank, "alpha": rank},
        converted_from=converted_from,
    )
