"""multiview: self-supervised multimodal, multi-view representation learning by maximising cross-view MI.

Sub-packages follow the data flow (see docs/ and DESIGN): ``data`` (shards) -> ``views`` (view generators)
-> ``encoders`` -> ``objectives`` -> ``train`` -> ``eval``. Import the sub-package you need; importing
``multiview`` itself stays light.
"""

from multiview.core.version import __version__


def load_encoder(path, **kwargs):
    """Load an encoder exported by ``multiview export`` (safetensors + config). See multiview.encoders.export."""
    from multiview.encoders.export import load_encoder as _load

    return _load(path, **kwargs)


__all__ = ["__version__", "load_encoder"]
