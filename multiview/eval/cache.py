"""Work that evaluations of one source share: embeddings and raw inputs, computed once per split and field.

A recipe's ``eval:`` entries (the quickstart's retrieval and linear probe) and one evaluation's methods ask for
the same things: the learned embeddings of the test split (retrieval, the probe), the raw inputs of both splits
(the CCA baseline, the raw probe). :class:`EvalCache` keeps what one pass over a split produced, keyed by

- learned: (source, split, field, encoders, probe features, batch size, device);
- raw inputs: (source, split, field); raw features: (source, fitting split, split, field);

where the source is the data, the field renaming and the label field (:meth:`EvalContext.source_key
<multiview.eval.base.EvalContext.source_key>`). A split is read once for everything missing from it: the learned
fields are embedded and the raw inputs collected in the same pass. The numbers are the same as without the cache
(the same samples in the same batches through the same encoders); the cache only skips repeats.

Hand one cache to several :class:`~multiview.eval.base.EvalContext` objects (``EvalContext(cache=...)``) to share
across evaluations, as :func:`multiview.eval.recipe_eval.run_recipe_eval` does. What it holds stays in memory for
the cache's life: the raw inputs of every split read (mfeat: 2 x 1,000 rows of 649 values).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

from multiview.eval.baselines import RawFeaturizer, raw_input
from multiview.eval.embed import Embedded
from multiview.eval.probes import small_problem_threads
from multiview.eval.tasks import collect_raw, embed_learned

if TYPE_CHECKING:
    from multiview.eval.base import EvalContext
    from multiview.eval.bundle import EvalBundle


class EvalCache:
    """Embeddings and raw inputs already computed (see the module docstring); ``hits`` / ``misses`` count fields."""

    def __init__(self) -> None:
        self._learned: dict[tuple, Embedded] = {}
        self._raw: dict[tuple, list[torch.Tensor]] = {}
        self._raw_rows: dict[tuple, tuple[Any, list[str]]] = {}  # (source, split) -> (labels, keys)
        self._featurized: dict[tuple, Embedded] = {}
        self._bundles: dict[int, EvalBundle] = {}  # keeps the encoders whose id is in a key alive
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self.__init__()

    # ----------------------------------------------------------------------------------------- keys
    def _learned_key(self, ctx: EvalContext, base: EvalBundle, features: tuple, split: str, f: str) -> tuple:
        return (ctx.source_key(), split, f, id(base), features, ctx.batch_size, str(ctx.device))

    # ----------------------------------------------------------------------------------------- reads
    def read(
        self,
        ctx: EvalContext,
        split: str,
        learned: Sequence[str] = (),
        raw: Sequence[str] = (),
        bundle: EvalBundle | None = None,
        features: tuple = ("global",),
    ) -> None:
        """Make sure ``split`` has the learned embeddings of ``learned`` (through ``bundle``, the context's bundle
        or a :meth:`~multiview.eval.bundle.EvalBundle.with_probe_features` view of it named by ``features``) and
        the raw inputs of ``raw``: one pass over the split for whatever is missing."""
        base = ctx.encoders() if learned else None
        bundle = bundle if bundle is not None else base
        source = ctx.source_key()
        need_learned = [f for f in learned if self._learned_key(ctx, base, features, split, f) not in self._learned]
        need_raw = [f for f in raw if (source, split, f) not in self._raw]
        self.hits += len(learned) + len(raw) - len(need_learned) - len(need_raw)
        self.misses += len(need_learned) + len(need_raw)
        if not need_learned and not need_raw:
            return
        samples = ctx.progress_bar(ctx.samples(split), total=ctx.split_size(split), desc=f"read {split}",
                                   unit="sample")  # fmt: skip
        with samples:
            if not need_learned:
                inputs, labels, keys = collect_raw(samples, need_raw, ctx.label_field)
            else:
                sink: dict[str, list[torch.Tensor]] = {f: [] for f in need_raw}
                emb = embed_learned(bundle, _tap(samples, sink), need_learned, ctx.label_field, ctx.batch_size,
                                    ctx.device)  # fmt: skip
                self._bundles[id(base)] = base
                for f in need_learned:
                    self._learned[self._learned_key(ctx, base, features, split, f)] = emb[f]
                inputs, labels, keys = sink, emb[need_learned[0]].labels, emb[need_learned[0]].keys
        for f in need_raw:
            self._raw[(source, split, f)] = inputs[f]
        if need_raw:
            self._raw_rows[(source, split)] = (labels, keys)

    def learned(
        self, ctx: EvalContext, split: str, fields: Sequence[str], bundle=None, features: tuple = ("global",)
    ) -> dict[str, Embedded]:
        """``{field: Embedded}`` of the checkpoint's encoders (see :meth:`read`)."""
        self.read(ctx, split, learned=fields, bundle=bundle, features=features)
        base = ctx.encoders()
        return {f: self._learned[self._learned_key(ctx, base, features, split, f)] for f in fields}

    def raw(
        self, ctx: EvalContext, fields: Sequence[str], train_split: str, splits: Sequence[str]
    ) -> dict[str, dict[str, Embedded]]:
        """``{split: {field: Embedded}}`` of raw inputs, every split shaped like ``train_split`` (as
        :func:`multiview.eval.tasks.embed_raw`)."""
        source = ctx.source_key()
        for split in dict.fromkeys([train_split, *splits]):
            self.read(ctx, split, raw=fields)
        out: dict[str, dict[str, Embedded]] = {}
        for split in splits:
            labels, keys = self._raw_rows[(source, split)]
            out[split] = {}
            for f in fields:
                key = (source, train_split, split, f)
                if key not in self._featurized:
                    feat = RawFeaturizer(f).fit(self._raw[(source, train_split, f)])
                    self._featurized[key] = Embedded(feat.transform(self._raw[(source, split, f)]), labels, keys)
                out[split][f] = self._featurized[key]
        return out

    def __repr__(self) -> str:
        return (
            f"EvalCache({len(self._learned)} learned and {len(self._raw)} raw field-splits; "
            f"{self.hits} hits, {self.misses} misses)"
        )


def _tap(samples: Iterable[dict], sink: dict[str, list[torch.Tensor]]) -> Iterator[dict]:
    """``samples`` unchanged, with the raw input of every field of ``sink`` appended to it on the way (on one
    torch thread, as :func:`multiview.eval.tasks.collect_raw` does)."""
    for sample in samples:
        if sink:
            with small_problem_threads(0):
                for f, inputs in sink.items():
                    inputs.append(raw_input(sample, f))
        yield sample
