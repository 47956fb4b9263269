"""Shared fixtures of the view-generator tests: small real-looking inputs, made in memory or in tmp."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch


@pytest.fixture
def rgb() -> torch.Tensor:
    """A 48x40 uint8 RGB image with smooth colour gradients (hue varies across it) and some texture."""
    h, w = 48, 40
    y = torch.linspace(0, 1, h).unsqueeze(1).expand(h, w)
    x = torch.linspace(0, 1, w).unsqueeze(0).expand(h, w)
    img = torch.stack([x, y, 1 - x * y]) * 200 + torch.rand(3, h, w, generator=torch.Generator().manual_seed(1)) * 55
    return img.round().clamp(0, 255).to(torch.uint8)


@pytest.fixture
def sample(rgb) -> dict:
    return {"__key__": "img-0001", "image": rgb}


@pytest.fixture(scope="session")
def noise_dir(tmp_path_factory) -> Path:
    """A folder of a few real recordings (Debian's sonic-pi-samples) converted to 16 kHz mono WAV with sox."""
    src = Path("/usr/share/sonic-pi/samples")
    if shutil.which("sox") is None or not src.is_dir():
        pytest.skip("sox or sonic-pi-samples not installed")
    out = tmp_path_factory.mktemp("noise")
    for name in ("ambi_drone", "ambi_glass_hum"):
        subprocess.run(
            [
                "sox",
                str(src / f"{name}.flac"),
                "-r",
                "16000",
                "-c",
                "1",
                "-b",
                "16",
                str(out / f"{name}.wav"),
                "trim",
                "0",
                "1.5",
            ],
            check=True,
            capture_output=True,
        )
    return out
