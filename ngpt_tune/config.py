"""One typed, frozen configuration for a training run: model + optimiser + data + run.

Built in exactly one place (:meth:`Config.from_dict`), from a nested dict or a YAML file.
Unknown keys, wrong types and impossible values raise :class:`ConfigError` naming the key.
``dataclasses.asdict(config)`` is what gets logged.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from ngpt_tune.errors import ConfigError, unknown_key_message

BUILTIN_DATA = "builtin"
# the built-in corpus renumbered to a small vocabulary (ngpt_tune.builtin_corpus.compact_ids): its 4,095
# most frequent training tokens, every other token one shared id. A tiny model's step is then a
# tenth of its cost with GPT-2's 50,257 logits (the tests, --smoke, the benchmarks' small runs)
BUILTIN_COMPACT_DATA = "builtin-compact"
COMPACT_VOCAB = 4096
BUILTIN_CORPORA = (BUILTIN_DATA, BUILTIN_COMPACT_DATA)
FINEWEB_HINT = (
    "get the shards with `python -m ngpt_tune download-fineweb --shards 2 --out DIR` "
    "and set data.dir (or NGPT_DATA_DIR), or run with --smoke to use the built-in corpus"
)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture. ``arch: gpt`` is the plain pre-norm baseline; every other knob is nGPT's."""

    arch: Literal["ngpt", "gpt"] = "ngpt"
    n_layer: int = 4
    n_embd: int = 192
    n_head: int = 6
    block_size: int = 128
    vocab_size: int = 50257
    mlp_ratio: float = 4.0  # SwiGLU hidden = mlp_ratio * n_embd (NVIDIA's nGPT code: 4)
    rope_base: float = 10000.0
    tie_embeddings: bool = False  # nGPT and the prior campaign use untied wte / lm_head
    # --- nGPT (Loshchilov et al. 2024, arXiv 2410.01131) ---
    alpha: float = 0.05  # initial eigen learning rate of each residual branch (paper: 0.05)
    alpha_mode: Literal["vector", "scalar"] = "vector"  # per-channel (paper) or one per branch
    logit_scale: Union[Literal["learned"], float] = "learned"  # learned s_z or a fixed number
    learned_qk_scale: bool = True  # the paper's learned s_qk; False: s_qk fixed at 1
    learned_mlp_scale: bool = True  # the paper's s_u / s_v; False: fixed at 1
    proj_every: int = 1  # re-project weights onto the sphere every k optimiser steps (paper: 1)
    gated_residuals: bool = False  # the prior campaign's sigmoid(g) * alpha residual gates
    gate_init: float = 0.0  # sigmoid(0) = 0.5
    gate_mode: Literal["channel", "layer"] = "channel"  # a gate per channel or one per branch
    shared_gates: bool = False  # attention and MLP branches of a layer share their gate

    def __post_init__(self) -> None:
        _positive(
            self, "n_layer", "n_embd", "n_head", "block_size", "vocab_size", "proj_every", "mlp_ratio"
        )
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}", key="n_embd"
            )
        if (self.n_embd // self.n_head) % 2:
            raise ConfigError("head size n_embd/n_head must be even for RoPE", key="n_head")
        if not 0.0 < self.alpha <= 1.0:
            raise ConfigError(f"must be in (0, 1], got {self.alpha}", key="alpha")
        if self.arch == "gpt" and self.gated_residuals:
            raise ConfigError("residual gates are an nGPT option, not for arch 'gpt'",
                              key="gated_residuals")
        if self.logit_scale != "learned" and not self.logit_scale > 0:
            raise ConfigError(f"must be 'learned' or > 0, got {self.logit_scale}", key="logit_scale")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_hidden(self) -> int:
        return int(self.mlp_ratio * self.n_embd)


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule."""

    name: Literal["adamw", "adam", "muon"] = "adamw"
    lr: float = 1e-3  # matrices (and, under Muon, embeddings and head)
    lr_other_scale: float = 0.3  # vectors (alpha, s_qk, s_uv, s_z, gates): the prior campaign's 0.3 x lr
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.0  # nGPT needs none: its matrices live on the sphere
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    warmup_steps: int = 0
    schedule: Literal["cosine", "linear", "constant", "wsd"] = "cosine"
    min_lr_ratio: float = 0.1  # final lr as a fraction of the peak
    # wsd (warmup-stable-decay): the peak lr until the last cooldown_frac of the steps, then
    # down to min_lr_ratio; 1-sqrt is Hägele et al. 2024's best shape at a 20% cooldown
    cooldown_frac: float = 0.2
    cooldown_shape: Literal["linear", "1-sqrt", "cosine"] = "1-sqrt"
    muon_lr: float = 0.02  # modded-nanogpt's Muon lr for hidden matrices
    muon_momentum: float = 0.95
    ns_steps: int = 5  # quintic Newton-Schulz iterations

    def __post_init__(self) -> None:
        _positive(self, "lr", "lr_other_scale", "eps", "muon_lr", "ns_steps")
        _non_negative(self, "weight_decay", "grad_clip", "warmup_steps", "min_lr_ratio")
        for i, b in enumerate(self.betas):
            if not 0.0 <= b < 1.0:
                raise ConfigError(f"betas[{i}] must be in [0, 1), got {b}", key="betas")
        if not 0.0 <= self.muon_momentum < 1.0:
            raise ConfigError("must be in [0, 1)", key="muon_momentum")
        if self.min_lr_ratio > 1.0:
            raise ConfigError("must be in [0, 1]", key="min_lr_ratio")
        if not 0.0 < self.cooldown_frac <= 1.0:
            raise ConfigError(f"must be in (0, 1], got {self.cooldown_frac}", key="cooldown_frac")


@dataclass(frozen=True)
class DataConfig:
    """Token shards. ``dir: builtin`` is the Python documentation corpus shipped with CPython
    (``builtin-compact``: the same in a vocabulary of ``COMPACT_VOCAB`` ids)."""

    dir: str = BUILTIN_DATA
    train_pattern: str = "fineweb_train_*.bin"
    val_pattern: str = "fineweb_val_*.bin"
    batch_size: int = 32
    # rows per forward and backward (gradient accumulation: the same step, in less memory);
    # 0: the whole batch at once. batch_size must be a multiple of it
    micro_batch_size: int = 0
    val_tokens: int = 32768  # fixed, seeded validation set, the same for every eval

    def __post_init__(self) -> None:
        _positive(self, "batch_size", "val_tokens")
        _non_negative(self, "micro_batch_size")
        if self.micro_batch_size and self.batch_size % self.micro_batch_size:
            raise ConfigError(f"batch_size {self.batch_size} is not a multiple of "
                              f"micro_batch_size {self.micro_batch_size}", key="micro_batch_size")
        if self.dir not in BUILTIN_CORPORA:
            path = Path(self.dir)
            if not path.is_absolute():
                object.__setattr__(self, "dir", str(path.resolve()))
            if not Path(self.dir).is_dir():
                raise ConfigError(f"folder {self.dir} does not exist; {FINEWEB_HINT}", key="dir")


@dataclass(frozen=True)
class TrainConfig:
    """The run: length, evaluation, seed and device."""

    steps: int = 400
    eval_every: int = 50
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # auto: bf16 autocast on CUDA
    # auto: torch.compile on CUDA when the run pays for it (ngpt_tune.compiling.compile_mode);
    # reduce-overhead: compile with CUDA graphs (small batches); YAML's true/false = on/off
    compile: Literal["auto", "on", "off", "reduce-overhead"] = "auto"
    threads: int = 0  # CPU threads for torch; 0 keeps torch's default

    def __post_init__(self) -> None:
        _positive(self, "steps", "eval_every")
        _non_negative(self, "seed", "threads")


@dataclass(frozen=True)
class Config:
    """Everything one training run needs. Build with :meth:`from_dict` or :meth:`from_yaml`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.data.dir == BUILTIN_COMPACT_DATA and self.model.vocab_size < COMPACT_VOCAB:
            raise ConfigError(f"is {self.model.vocab_size}: data.dir {BUILTIN_COMPACT_DATA} has "
                              f"{COMPACT_VOCAB} token ids", key="model.vocab_size")

    @property
    def tokens_per_step(self) -> int:
        return self.data.batch_size * self.model.block_size

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None, *, source: str | None = None) -> Config:
        """Build from ``{"model": {...}, "optim": {...}, ...}``; dotted keys are accepted too."""
        try:
            nested = nest_dotted(raw or {})
            if not isinstance(nested, dict):
                raise ConfigError("must be a mapping of sections")
            sections = {f.name: f.type for f in dataclasses.fields(cls)}
            kwargs = {}
            for name, value in nested.items():
                if name not in sections:
                    raise ConfigError(unknown_key_message(name, sections), key=name)
                kwargs[name] = build_section(_SECTIONS[name], value, prefix=name)
            return cls(**kwargs)
        except ConfigError as err:
            raise err.with_source(source) if source else err from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> Config:
        return cls.from_dict(load_yaml(path), source=str(path))

    def override(self, flat: dict[str, Any]) -> Config:
        """A new config with dotted keys (``{"model.alpha": 0.2}``) replaced."""
        merged = dataclasses.asdict(self)
        for key, value in flat.items():
            set_dotted(merged, key, value)
        return Config.from_dict(merged)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {"model": ModelConfig, "optim": OptimConfig, "data": DataConfig, "train": TrainConfig}


def load_yaml(path: str | os.PathLike) -> Any:
    """Read a YAML file; a missing file or a syntax error is a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("file not found", source=str(path))
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "malformed"
        raise ConfigError(f"not valid YAML{where}: {problem}", source=str(path)) from None


def nest_dotted(raw: dict[str, Any]) -> dict[str, Any]:
    """``{"model.alpha": 1, "train": {"steps": 2}}`` -> ``{"model": {"alpha": 1}, "train": ...}``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping, got {type(raw).__name__}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ConfigError("keys must be strings", key=str(key))
        if isinstance(value, dict):
            value = nest_dotted(value)
        set_dotted(out, key, value)
    return out


def flatten_dotted(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"alpha": 0.1}}`` -> ``{"model.alpha": 0.1}`` (the inverse of nest_dotted)."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_dotted(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def get_dotted(source: dict[str, Any], key: str, default: Any = None) -> Any:
    """``source["a.b"]`` if that flat key is there, else ``source["a"]["b"]``, else ``default``."""
    if key in source:
        return source[key]
    node: Any = source
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def set_dotted(target: dict[str, Any], key: str, value: Any) -> None:
    """Set ``target["a"]["b"] = value`` for ``key = "a.b"``, merging nested dicts."""
    head, _, rest = key.partition(".")
    if not rest:
        if isinstance(value, dict) and isinstance(target.get(head), dict):
            for sub_key, sub_value in value.items():
                set_dotted(target[head], sub_key, sub_value)
        else:
            target[head] = value
        return
    child = target.setdefault(head, {})
    if not isinstance(child, dict):
        raise ConfigError(f"'{head}' is a value, not a section", key=key)
    set_dotted(child, rest, value)


def build_section(cls: type, value: Any, *, prefix: str) -> Any:
    if isinstance(value, cls):
        return value
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"must be a mapping, got {value!r}", key=prefix)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, item in value.items():
        if key not in names:
            raise ConfigError(unknown_key_message(key, names), key=f"{prefix}.{key}")
        kwargs[key] = _coerce(item, hints[key], key=f"{prefix}.{key}")
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise err.under(prefix) from None


def _coerce(value: Any, hint: Any, *, key: str) -> Any:
    """Check ``value`` against a type hint; ints pass as floats, lists as tuples."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option, key=key)
            except ConfigError:
                continue
        raise ConfigError(f"expected {_describe(hint)}, got {value!r}", key=key)
    if origin is Literal:
        if type(value) is bool and {"on", "off"} <= set(typing.get_args(hint)):
            value = "on" if value else "off"  # YAML 1.1 reads on/off (and yes/no) as booleans
        if value in typing.get_args(hint) and type(value) is not bool:
            return value
        raise ConfigError(f"expected {_describe(hint)}, got {value!r}", key=key)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"expected a list of {len(args)} numbers, got {value!r}", key=key)
        return tuple(_coerce(v, a, key=key) for v, a in zip(value, args))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"must be finite, got {value!r}", key=key)
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return _coerce(float(value), float, key=key)
            except ValueError:
                pass
    elif hint is str and isinstance(value, str):
        return _expand_path(value, key) if key.endswith(".dir") else value
    raise ConfigError(f"expected {_describe(hint)}, got {value!r}", key=key)


def _expand_path(value: str, key: str) -> str:
    """``~`` and ``$VARS`` in a folder; an unset variable is an error that names it."""
    expanded = os.path.expanduser(os.path.expandvars(value))
    unset = re.findall(r"\$\{?(\w+)", expanded)
    if unset:
        raise ConfigError(f"environment variable {unset[0]} is not set (in {value!r}); "
                          f"{FINEWEB_HINT}", key=key)
    return expanded


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        if not getattr(obj, name) > 0:
            raise ConfigError(f"must be > 0, got {getattr(obj, name)}", key=name)


def _non_negative(obj: Any, *names: str) -> None:
    for name in names:
        if getattr(obj, name) < 0:
            raise ConfigError(f"must be >= 0, got {getattr(obj, name)}", key=name)
