"""A small name -> factory registry, one per extension point (views, encoders, objectives).

Pure Python on purpose: ``multiview.views`` uses it and must not pull in anything heavy.

Examples:
    >>> OBJECTIVES = Registry("objective")
    >>> @OBJECTIVES.register("my_loss")
    ... class MyLoss: ...
    >>> OBJECTIVES.create("my_loss")  # doctest: +ELLIPSIS
    <...MyLoss object at ...>
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Sequence
from typing import Any


class Registry:
    """Maps a name to a factory (a class or a function) that builds a component."""

    def __init__(self, kind: str, plugins: Sequence[str] = ()):
        """``plugins``: modules that register the built-in entries, imported on the first lookup -- so a lower
        layer can hold a registry whose entries live in a higher one (the evaluations) without importing it."""
        self.kind = kind
        self._factories: dict[str, Callable[..., Any]] = {}
        self._plugins = tuple(plugins)

    def register(self, name: str | None = None, *, overwrite: bool = False):
        """Decorator: ``@REG.register("name")`` (or bare ``@REG.register()`` to use ``__name__``)."""

        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            key = name or factory.__name__
            if key in self._factories and not overwrite and self._factories[key] is not factory:
                raise ValueError(f"{self.kind} {key!r} is already registered ({self._factories[key]!r})")
            self._factories[key] = factory
            return factory

        return decorator

    def _load_plugins(self) -> None:
        plugins, self._plugins = self._plugins, ()
        for module in plugins:
            importlib.import_module(module)

    def get(self, name: str) -> Callable[..., Any]:
        self._load_plugins()
        if name not in self._factories:
            close = difflib.get_close_matches(name, self._factories, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise KeyError(f"unknown {self.kind} {name!r}{hint} (registered: {', '.join(sorted(self._factories))})")
        return self._factories[name]

    def create(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._factories

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
