"""The contract between encoders and objectives: :class:`multiview.core.features.Features` (defined in the core so
objectives import it without importing the encoders and timm)."""

from multiview.core.features import Features

__all__ = ["Features"]
