"""The registry of evaluations (``multiview eval <name>``, recipe ``eval:`` entries).

It lives in the core so the recipe loader (the training layer) can check an ``eval:`` entry -- its kind and its
options, with the file and line of a bad value -- without importing the evaluation layer; the built-in
evaluations register themselves when a lookup first needs them. Write your own with
``@multiview.eval.register_evaluation("name")`` (docs/guide/extending.md).
"""

from __future__ import annotations

from multiview.registry import Registry

EVALUATIONS = Registry(
    "evaluation",
    plugins=("multiview.eval.retrieval_task", "multiview.eval.probe_tasks", "multiview.eval.segment_task"),
)
