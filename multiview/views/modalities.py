"""Combinators: different generators on different fields of one sample.

``fields``: ``{field: generator spec}``; each generator reads its own field (``field`` defaults to the key)
and its views are renamed after the key: one view -> ``key``; several -> ``key0``, ``key1``, ...
``modalities``: the same with one view per modality by default (``n_views`` in a spec asks for more), and
``modality_of(view)`` is the key (the modality's name): the CMC-across-modalities set-up.

Specs are plain dicts (recipes are YAML) or ready generators, e.g.::

    create("modalities", modalities={"image": {"name": "amdim", "size": 64},
                                     "audio": {"name": "audio", "duration": 1.0, "n_views": 2}})
    # -> views "image", "audio0", "audio1"

Each sub-generator draws from its own child generator (seeded from the sample's generator, in key order), so
appending a modality leaves the views of the earlier ones unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from multiview.views.base import META, ViewGenerator, build_generator, child_generator, register


@register("fields")
class FieldViews(ViewGenerator):
    """Apply one generator per field and merge their views (renamed after the keys).

    Args:
        fields: ``{key: spec}``; a spec is a generator or ``{"name": ..., **kwargs}``. A spec without
            ``field`` reads the field named ``key`` when its generator takes a ``field`` argument.
        default_n_views: ``n_views`` given to specs that leave it out (``None``: the generator's default).
    """

    def __init__(
        self,
        fields: Mapping[str, Any],
        *,
        default_n_views: int | None = None,
        seed: int = 0,
        train: bool = True,
    ):
        super().__init__(seed=seed, train=train)
        if not isinstance(fields, Mapping) or not fields:
            raise ValueError(f"expected a non-empty mapping {{key: generator spec}}, got {fields!r}")
        self.generators: dict[str, Any] = {}
        self._modality: dict[str, str] = {}
        for key, spec in fields.items():
            defaults: dict[str, Any] = {"field": key, "seed": seed, "train": train}
            if default_n_views is not None:
                defaults["n_views"] = default_n_views
            if isinstance(spec, Mapping) and "modality" in spec:
                self._modality[key] = str(spec["modality"])
                spec = {k: v for k, v in spec.items() if k != "modality"}
            gen = build_generator(spec, where=f"{type(self).__name__} entry {key!r}", **defaults)
            if not train and getattr(gen, "train", False) and hasattr(gen, "eval_transform"):
                gen = gen.eval_transform()
            if not hasattr(gen, "view_names"):
                raise ValueError(f"entry {key!r}: {gen!r} has no view_names; expected a ViewGenerator")
            self.generators[str(key)] = gen
        self._names = {key: self._rename(key, gen.view_names) for key, gen in self.generators.items()}
        all_names = [n for names in self._names.values() for n in names.values()]
        if len(set(all_names)) != len(all_names):
            raise ValueError(f"view names collide: {all_names}; rename the keys")

    @staticmethod
    def _rename(key: str, sub_names: tuple[str, ...]) -> dict[str, str]:
        if len(sub_names) == 1:
            return {sub_names[0]: key}
        return {sub: f"{key}{i}" for i, sub in enumerate(sub_names)}

    @property
    def view_names(self) -> tuple[str, ...]:
        return tuple(n for names in self._names.values() for n in names.values())

    def owner_of(self, view_name: str) -> tuple[str, str]:
        """``(key, sub-view name)``: which entry of ``fields`` emits ``view_name``, under which of its names."""
        for key, names in self._names.items():
            for sub, name in names.items():
                if name == view_name:
                    return key, sub
        raise ValueError(f"{type(self).__name__} emits views {list(self.view_names)}, not {view_name!r}")

    def modality_of(self, view_name: str) -> str:
        """The modality of the sub-generator's view (``"image"``, ``"audio"``, ``"sensor"``)."""
        key, sub = self.owner_of(view_name)
        return self._modality.get(key) or self.generators[key].modality_of(sub)

    def generate(self, sample: Any, generator: torch.Generator) -> dict[str, Any]:
        if not isinstance(sample, Mapping):
            raise ValueError(f"{type(self).__name__} needs a sample dict, got {type(sample).__name__}")
        out: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        for key, gen in self.generators.items():
            views = gen(sample, generator=child_generator(generator))
            sub_meta = views.get(META, {})
            for sub, name in self._names[key].items():
                out[name] = views[sub]
                meta[name] = sub_meta.get(sub, {})
        out[META] = meta
        return out

    def batch(self, samples: Sequence[Any], *, generators: Sequence[torch.Generator] | None = None) -> list[dict]:
        """The views of several samples, each field's generator called once for all of them (its batched path);
        the same views as one call per sample: each sample's per-field generators are drawn in the same order."""
        generators = self._generators(samples, generators)
        for sample in samples:
            if not isinstance(sample, Mapping):
                raise ValueError(f"{type(self).__name__} needs a sample dict, got {type(sample).__name__}")
        children = [[child_generator(g) for _ in self.generators] for g in generators]
        outs: list[dict[str, Any]] = [{} for _ in samples]
        metas: list[dict[str, Any]] = [{} for _ in samples]
        for k, (key, gen) in enumerate(self.generators.items()):
            sub_generators = [c[k] for c in children]
            if hasattr(gen, "batch"):  # any ViewGenerator; a plain callable from the registry loops
                sub_views = gen.batch(samples, generators=sub_generators)
            else:
                sub_views = [gen(s, generator=g) for s, g in zip(samples, sub_generators)]
            for out, meta, views in zip(outs, metas, sub_views):
                for sub, name in self._names[key].items():
                    out[name] = views[sub]
                    meta[name] = views.get(META, {}).get(sub, {})
        for out, meta in zip(outs, metas):
            out[META] = meta
        return outs


@register("modalities")
class ModalityViews(FieldViews):
    """One view per modality (``n_views`` in a spec for more), named by modality: CMC across modalities.

    Args:
        modalities: ``{modality: spec}``, e.g. ``{"image": {"name": "amdim", "size": 64}, "audio": {"name":
            "audio"}}``. ``modality_of(view)`` returns the key (or the spec's ``"modality"`` entry).

    Examples:
        >>> gen = ModalityViews({"image": {"name": "amdim", "size": 16}, "tactile": {"name": "tactile"}})
        >>> gen.view_names, gen.modality_of("tactile")
        (('image', 'tactile'), 'tactile')
    """

    def __init__(self, modalities: Mapping[str, Any], *, seed: int = 0, train: bool = True):
        super().__init__(modalities, default_n_views=1, seed=seed, train=train)

    def modality_of(self, view_name: str) -> str:
        key, _ = self.owner_of(view_name)
        return self._modality.get(key, key)
