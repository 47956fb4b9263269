"""Evaluation: cross-view retrieval, linear probe and kNN on frozen features, baselines, plots and reports.

Light on import (the CLI imports ``multiview.eval.cli`` to build its parser): the names below load on first use.

- :mod:`multiview.eval.retrieval`: ``instance_metrics``, ``class_metrics``, ``retrieval_report``, ``top_k``
- :mod:`multiview.eval.probes`: ``linear_probe``, ``knn_probe``, ``OnlineProbe``
- :mod:`multiview.eval.baselines`: ``raw_input``, ``RawFeaturizer``, ``CCA``, ``CCARetrieval``
- :mod:`multiview.eval.embed`: ``embed_samples``, ``embed_field``, ``Embedded``
- :mod:`multiview.eval.bundle`: ``EvalBundle`` (what ``multiview.eval.load.load_for_eval`` returns)
- :mod:`multiview.eval.base`: the extension point: ``Evaluation``, ``EvalContext``, ``register_evaluation``,
  ``run_evaluation`` (the registry: ``multiview.core.evaluations.EVALUATIONS``)
- :mod:`multiview.eval.cache`: ``EvalCache`` (embeddings and raw inputs computed once, shared by evaluations)
- :mod:`multiview.eval.progress`: progress bars and phase times of an evaluation
- :mod:`multiview.eval.retrieval_task`, :mod:`multiview.eval.probe_tasks`, :mod:`multiview.eval.segment_task`:
  the built-in evaluations (segment: maps from :mod:`~multiview.eval.segment_maps`, scores from
  :mod:`~multiview.eval.segment_metrics`, grids from :mod:`~multiview.eval.segment_plots`)
- :mod:`multiview.eval.tasks`: ``run_retrieval``, ``run_linear``, ``run_knn`` (library calls) and shared inputs
- :mod:`multiview.eval.plots`, :mod:`multiview.eval.report`
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "instance_metrics": "retrieval",
    "class_metrics": "retrieval",
    "retrieval_report": "retrieval",
    "top_k": "retrieval",
    "linear_probe": "probes",
    "knn_probe": "probes",
    "knn_predict": "probes",
    "OnlineProbe": "probes",
    "raw_input": "baselines",
    "RawFeaturizer": "baselines",
    "CCA": "baselines",
    "CCARetrieval": "baselines",
    "embed_samples": "embed",
    "embed_field": "embed",
    "Embedded": "embed",
    "EvalBundle": "bundle",
    "EvalCache": "cache",
    "run_retrieval": "tasks",
    "run_linear": "tasks",
    "run_knn": "tasks",
    "Evaluation": "base",
    "EvalContext": "base",
    "OptionError": "base",
    "EvalInputError": "base",
    "register_evaluation": "base",
    "get_evaluation": "base",
    "run_evaluation": "base",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'multiview.eval' has no attribute {name!r}")
    return getattr(importlib.import_module(f"multiview.eval.{_EXPORTS[name]}"), name)
