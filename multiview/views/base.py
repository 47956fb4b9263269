"""The view-generator contract: seeded randomness, input checks, config capture, ``repr`` and eval mode.

A view generator turns ONE decoded sample (a dict of fields, or a bare tensor / PIL image for single-field
generators) into named views: ``{"view0": tensor, ..., "__meta__": {"view0": {...}}}``
(docs/architecture.md, section 2).

Randomness comes only from a ``torch.Generator``. Without one, the generator derives one from its own ``seed``
and the sample's ``__key__`` through a stable hash (blake2b, never Python's per-process salted ``hash()``), so
the same seed and sample give the same views in any process.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from multiview.core.seeding import child_generator, derive_generator, stable_hash  # noqa: F401 (re-exported)
from multiview.registry import Registry

META = "__meta__"
VIEWS = Registry("view generator")


def register(name: str | None = None, *, overwrite: bool = False):
    """Decorator registering a view generator (a class or a factory) under ``name`` for ``create``."""
    return VIEWS.register(name, overwrite=overwrite)


class Uniforms:
    """Uniform [0, 1) numbers drawn from a generator in chunks: one torch call serves many Python draws.

    Drawing chunk by chunk keeps the stream a pure function of the generator's state, so results do not
    depend on how many numbers a sample happens to need.
    """

    def __init__(self, generator: torch.Generator, chunk: int = 64):
        self.generator = generator
        self.chunk = chunk
        self._buf: list[float] = []
        self._pos = 0

    def next(self) -> float:
        if self._pos == len(self._buf):
            self._buf = torch.rand(self.chunk, generator=self.generator, dtype=torch.float64).tolist()
            self._pos = 0
        self._pos += 1
        return self._buf[self._pos - 1]

    def take(self, n: int) -> list[float]:
        """The next ``n`` numbers at once (one Python call instead of ``n``)."""
        if self._pos + n > len(self._buf):
            rest = self._buf[self._pos :]
            need = max(self.chunk, n - len(rest))
            self._buf = rest + torch.rand(need, generator=self.generator, dtype=torch.float64).tolist()
            self._pos = 0
        self._pos += n
        return self._buf[self._pos - n : self._pos]

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.next()

    def bernoulli(self, p: float) -> bool:
        return self.next() < p

    def randint(self, low: int, high: int) -> int:
        """An integer in ``[low, high)``."""
        return low + min(int(self.next() * (high - low)), high - low - 1)

    def permutation(self, n: int) -> list[int]:
        keys = [self.next() for _ in range(n)]
        return sorted(range(n), key=keys.__getitem__)


def content_digest(value: Any) -> bytes:
    """A digest of a sample's content, used as its key when it has no ``__key__`` (bare tensors, PIL)."""
    h = hashlib.blake2b(digest_size=8)
    if isinstance(value, Mapping):
        for k in sorted(value, key=str):
            h.update(str(k).encode() + content_digest(value[k]))
    elif isinstance(value, torch.Tensor):
        h.update(str(value.dtype).encode() + str(tuple(value.shape)).encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    elif isinstance(value, np.ndarray):
        h.update(str(value.dtype).encode() + str(value.shape).encode() + np.ascontiguousarray(value).tobytes())
    elif hasattr(value, "tobytes"):  # PIL images
        h.update(value.tobytes())
    else:
        h.update(repr(value).encode())
    return h.digest()


def sample_key(sample: Any) -> str | bytes:
    """``sample["__key__"]`` when present, else a digest of the sample's content."""
    if isinstance(sample, Mapping) and "__key__" in sample:
        return str(sample["__key__"])
    return content_digest(sample)


def describe_sample(sample: Any) -> str:
    """How error messages name a sample: its key when it has one."""
    if isinstance(sample, Mapping) and "__key__" in sample:
        return f"sample {sample['__key__']!r}"
    return "sample"


def get_field(sample: Any, field: str) -> Any:
    """``sample[field]`` for a dict sample; a bare tensor / PIL image is the field itself."""
    if not isinstance(sample, Mapping):
        return sample
    if field not in sample:
        fields = sorted(k for k in sample if not str(k).startswith("__"))
        raise ValueError(f"{describe_sample(sample)} has no field {field!r}; expected it among fields {fields}")
    return sample[field]


def check_positive(name: str, value: float, *, integer: bool = False, allow_zero: bool = False) -> None:
    """Raise ValueError unless ``value`` is a positive (or non-negative) number (an int if ``integer``)."""
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value):
        kind = "an int" if integer else "a number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def check_probability(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


def check_range(name: str, value: Any, *, low: float = -math.inf, high: float = math.inf) -> tuple[float, float]:
    """A ``(lo, hi)`` pair with ``low <= lo <= hi <= high``, or ValueError naming what was seen."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high), got {value!r}") from None
    if not low <= lo <= hi <= high:
        raise ValueError(f"{name} must satisfy {low} <= low <= high <= {high}, got {value!r}")
    return lo, hi


def _short_repr(value: Any) -> str:
    """Tensors and long lists would flood a repr: show their shape / length instead."""
    if isinstance(value, torch.Tensor):
        return f"Tensor{list(value.shape)}"
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return f"<{type(value).__name__} of {len(value)}>"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {_short_repr(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _inherited_defaults(cls: type, known: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults of base-class constructor arguments that ``**kwargs`` forwards and the caller left out."""
    out: dict[str, Any] = {}
    for base in cls.__mro__[1:]:
        init = base.__dict__.get("__init__")
        if init is None or base is object:
            continue
        for name, param in inspect.signature(getattr(init, "__wrapped__", init)).parameters.items():
            if name not in known and name not in out and param.default is not inspect.Parameter.empty:
                out[name] = param.default
    return out


class ViewGenerator:
    """Base class of every view generator.

    Subclasses implement ``generate(sample, generator) -> {name: tensor, "__meta__": {...}}`` and
    ``view_names``; they set ``modality`` (``"image"``, ``"audio"``, ``"sensor"``). The constructor's
    keyword arguments are captured automatically (``self.config``) for ``repr``, ``eval_transform`` and
    rebuilding from a recipe.

    Args:
        seed: seed used when no ``generator`` is passed (combined with the sample's ``__key__``).
        train: random augmentations when True; deterministic evaluation transforms when False.
    """

    modality: str = "image"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Record the outermost constructor's arguments once, so every subclass gets repr / eval_transform /
        # config without repeating its argument list.
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args: Any, **kw: Any) -> None:
            if "config" not in self.__dict__:
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                config = dict(bound.arguments)
                config.pop("self")
                for name, param in signature.parameters.items():
                    if param.kind is inspect.Parameter.VAR_KEYWORD:
                        config.update(config.pop(name))
                        config.update(_inherited_defaults(cls, config))
                self.config = config
            init(self, *args, **kw)

        cls.__init__ = recording_init

    def __init__(self, *, seed: int = 0, train: bool = True):
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.seed = seed
        self.train = bool(train)

    # -- the contract -------------------------------------------------------------------------------------
    def __call__(self, sample: Any, generator: torch.Generator | None = None) -> dict[str, Any]:
        # ``generator`` may come positionally too: multiview.data's ShardStream calls map_fn(sample, generator).
        if generator is None:
            generator = derive_generator(self.seed, sample_key(sample))
        elif not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        return self.generate(sample, generator)

    def generate(self, sample: Any, generator: torch.Generator) -> dict[str, Any]:
        raise NotImplementedError

    def batch(self, samples: Sequence[Any], *, generators: Sequence[torch.Generator] | None = None) -> list[dict]:
        """The views of several samples: the same as ``[gen(s, generator=g) for s, g in ...]`` (to float
        rounding). Generators that can share tensor operations across samples override this (the image
        crop generators do); the rest loop. Without ``generators`` each sample derives its own."""
        return [self.generate(s, g) for s, g in zip(samples, self._generators(samples, generators))]

    def _generators(self, samples: Sequence[Any], generators: Sequence[torch.Generator] | None):
        if generators is None:
            return [derive_generator(self.seed, sample_key(s)) for s in samples]
        if len(generators) != len(samples):
            raise ValueError(f"got {len(generators)} generators for {len(samples)} samples; expected one each")
        return list(generators)

    @property
    def view_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def modality_of(self, view_name: str) -> str:
        """The modality of a view this generator emits (``"image"``, ``"audio"``, ``"sensor"``)."""
        if view_name not in self.view_names:
            raise ValueError(f"{type(self).__name__} emits views {list(self.view_names)}, not {view_name!r}")
        return self.modality

    def eval_transform(self) -> ViewGenerator:
        """The same generator in deterministic evaluation mode (centre crops, no noise)."""
        return type(self)(**{**copy.deepcopy(self.config), "train": False})

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_short_repr(v)}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"


def accepts(factory: Any, name: str) -> bool:
    """Whether ``factory`` (a generator class or function) takes a keyword argument ``name``."""
    target = factory.__init__ if isinstance(factory, type) else factory
    params = inspect.signature(target).parameters
    if name in params:
        return True
    # ``**kwargs`` that are forwarded to a base class (ImageViews) count when the base takes the name.
    if isinstance(factory, type) and any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return any(accepts(base, name) for base in factory.__mro__[1:] if "__init__" in base.__dict__)
    return False


def build_generator(spec: Any, *, where: str, **defaults: Any) -> Any:
    """A generator from ``spec``: a ready generator (returned as is) or a dict ``{"name": ..., **kwargs}``
    (recipes are YAML). ``defaults`` fill keyword arguments the spec leaves out and the factory accepts."""
    if callable(spec) and not isinstance(spec, Mapping):
        return spec
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ValueError(f"{where}: expected a generator or a dict with a 'name' key, got {spec!r}")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    factory = VIEWS.get(spec["name"])
    for key, value in defaults.items():
        if key not in kwargs and accepts(factory, key):
            kwargs[key] = value
    try:
        return factory(**kwargs)
    except TypeError as err:
        raise ValueError(f"{where}: bad arguments for view generator {spec['name']!r}: {err}") from None
