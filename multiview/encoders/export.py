"""Save and rebuild encoders as safetensors files with their config as JSON metadata.

``save_encoder(enc, "out/image.safetensors")`` writes:

- ``out/image.safetensors``: the whole encoder (``enc.state_dict()``), metadata ``multiview.config`` (the
  ``create`` kwargs), ``multiview.format``, ``multiview.version`` and ``multiview.extra`` (free-form JSON).
  :func:`load_encoder` rebuilds the encoder from it alone.
- for timm-based encoders (``timm`` and ``amdim`` kinds) also ``out/image.trunk.safetensors``: the trunk alone
  under timm's own key names, metadata ``timm.model_name`` and ``timm.kwargs``. timm loads it as pretrained
  weights::

      timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file="out/image.trunk.safetensors"),
                        num_classes=0, **kwargs)   # name / kwargs from the metadata; see create_timm_trunk

  (with ``in_chans != 3`` add ``input_size=(in_chans, H, W)`` to the overlay, or timm warns that its config
  declares 3 input channels; it loads the weights unchanged either way.)

Why two files: timm loads strictly (``load_state_dict(strict=True)``) whenever the model's ``num_classes``
matches its pretrained config, so any extra key (our heads) breaks it; a prefix timm ignores does not exist.
The trunk weights are therefore stored twice (the heads are small next to them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

FORMAT = "multiview.encoder/1"
SUFFIX = ".safetensors"


def trunk_path(path: str | Path) -> Path:
    """``x/enc.safetensors`` -> ``x/enc.trunk.safetensors``."""
    path = Path(path)
    return path.with_name(path.name[: -len(SUFFIX)] + ".trunk" + SUFFIX)


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    # clone(): safetensors refuses tensors that share storage (tied weights, views).
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def _check_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.name.endswith(SUFFIX) or path.name.endswith(".trunk" + SUFFIX):
        raise ValueError(f"encoder file must end with '{SUFFIX}' (and not '.trunk{SUFFIX}'), got {str(path)!r}")
    return path


def save_encoder(
    encoder: torch.nn.Module, path: str | Path, extra_metadata: dict[str, Any] | None = None
) -> list[Path]:
    """Write ``encoder`` to ``path`` (and its timm trunk next to it); returns the files written.

    Args:
        encoder: a multiview encoder (has ``config`` with ``kind``).
        path: destination ending in ``.safetensors``; parent folders are created.
        extra_metadata: JSON-serialisable dict stored under ``multiview.extra`` (recipe, step, metrics, ...).
    """
    path = _check_path(path)
    config = getattr(encoder, "config", None)
    if not isinstance(config, dict) or "kind" not in config:
        raise ValueError(f"save_encoder needs an encoder with a config dict holding 'kind', got {config!r}")
    from multiview.core.version import __version__

    meta = {
        "multiview.format": FORMAT,
        "multiview.version": __version__,
        "multiview.config": json.dumps(config),
        "multiview.extra": json.dumps(extra_metadata or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    written = [path]
    spec = encoder.timm_spec() if hasattr(encoder, "timm_spec") else None
    if spec is not None:
        name, kwargs = spec
        tmeta = {"timm.model_name": name, "timm.kwargs": json.dumps(kwargs), "multiview.format": FORMAT + "+trunk"}
        save_file(_tensors(encoder.trunk), str(trunk_path(path)), metadata=tmeta)
        meta["multiview.trunk_file"] = trunk_path(path).name
        written.append(trunk_path(path))
    save_file(_tensors(encoder), str(path), metadata=meta)
    return written


def read_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors metadata of ``path`` (``{}`` when it has none)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no encoder file at {str(path)!r}")
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_encoder(path: str | Path, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild an encoder written by :func:`save_encoder` and load its weights (strictly).

    The config's ``pretrained`` flag is forced off: the weights come from the file, nothing is downloaded.
    Returns the encoder in eval mode on ``map_location``; call ``.train()`` to fine-tune it.
    """
    from . import create

    path = Path(path)
    meta = read_metadata(path)
    if meta.get("multiview.format") != FORMAT:
        raise ValueError(
            f"{str(path)!r}: metadata 'multiview.format' is {meta.get('multiview.format')!r}, expected {FORMAT!r}"
            " (a file written by multiview.encoders.save_encoder; '.trunk.safetensors' files are for timm)"
        )
    try:
        config = json.loads(meta["multiview.config"])
    except (KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{str(path)!r}: metadata 'multiview.config' is missing or not JSON ({err})") from err
    kind = config.pop("kind")
    if config.get("pretrained"):
        config["pretrained"] = False
    encoder = create(kind, **config)
    encoder.load_state_dict(load_file(str(path), device="cpu"), strict=True)
    return encoder.to(map_location).eval()


def create_timm_trunk(path: str | Path, **overrides: Any) -> torch.nn.Module:
    """Load the trunk of an exported encoder through timm itself (``pretrained=True`` + file overlay).

    ``path`` is the encoder file or its ``.trunk.safetensors``; ``overrides`` update the stored kwargs.
    """
    import timm

    from . import amdim  # noqa: F401  (registers the amdim_* trunks with timm)

    path = Path(path)
    tpath = path if path.name.endswith(".trunk" + SUFFIX) else trunk_path(path)
    meta = read_metadata(tpath)
    if "timm.model_name" not in meta:
        raise ValueError(f"{str(tpath)!r}: no 'timm.model_name' in its metadata (not a timm trunk file)")
    name = meta["timm.model_name"]
    kwargs = {**json.loads(meta["timm.kwargs"]), **overrides}
    overlay: dict[str, Any] = {"file": str(tpath)}
    # The stored stem already has in_chans channels: say so, or timm warns that the cfg declares 3.
    input_size = timm.get_pretrained_cfg(name).input_size
    if input_size is not None:
        overlay["input_size"] = (kwargs.get("in_chans", 3), *input_size[1:])
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=0, **kwargs)
