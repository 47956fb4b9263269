"""The audio view transforms as maps on power spectrograms: log-mel views made without leaving the STFT domain.

A log-mel view keeps only the power spectrogram of its waveform, and each waveform transform of
``multiview.views.waveform`` has a map on that spectrogram that costs a fraction of the transform itself
(``AudioViews(domain="spectrogram")``; the transforms' waveform forms stay the reference):

- **speed, stretch, pitch** (``warp``: a resampling by ``factor`` after a vocoder stretch, tempo ``tempo``):
  the output frame centred at output sample ``c`` is the input's frame centred at ``tempo * c``, analysed with
  a window of ``n_fft * factor`` input samples whose bin ``k`` lands at output frequency ``factor * k * rate /
  n``, with power ``1 / factor ** 2``. For a resampling this is the output's STFT up to the window's sampling
  (a resampled signal's window covers ``factor`` times as many input samples); for the stretch it is the
  ideal phase vocoder's magnitude (the spectrum at the time the tempo maps to), without the vocoder's phase
  smearing. No STFT, vocoder, inverse STFT or resampling runs: one small FFT per output frame.
- **equaliser, band-pass**: each bin's power times the biquad's power response ``|H|^2`` at its output
  frequency, folded into the view's mel matrix (exact for the steady state: these filters ring for a few ms).
- **reverberation**: the convolutive power model: ``P_y(t, m) = sum_l P_x(t - l, m) E(l, m)``, with ``E(l,
  m)`` the mel power of the RIR's ``l``-th hop-long segment (its direct path in segment 0), rescaled to the
  view's power as ``reverberate`` keeps its RMS. The expected power of a convolution with a noise RIR; the
  phases inside a frame are not modelled.
- **loudness, gain**: scalars on power; **noise**: the noise's own mel power added at the drawn SNR (powers of
  independent signals add in expectation; the cross term, averaged over a mel band's bins, is left out).

Silence stays silent. With every transform off (crop, shift and gain only), a view is the waveform pipeline's
to float rounding (tests/views/test_spectrogram_rows.py); with them on it is close to it, the warp's edges
and the reverberation's and noise's fine structure aside (the same test file measures how close).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch

from multiview.views.waveform import _fft_size, biquad_coefficients


def _hz_to_mel(freq: float) -> float:
    """The HTK mel scale (torchaudio's default ``mel_scale="htk"``, the one ``AudioViews`` uses)."""
    return 2595.0 * math.log10(1.0 + freq / 700.0)


def mel_triangles(freqs: torch.Tensor, f_min: float, f_max: float, n_mels: int) -> torch.Tensor:
    """The triangular HTK mel filters of ``torchaudio.functional.melscale_fbanks`` (no norm) evaluated at any
    bin frequencies ``freqs [F]`` (Hz), not only at an FFT's grid: ``[F, n_mels]``."""
    m_pts = torch.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2)
    f_pts = 700.0 * (10.0 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - freqs.unsqueeze(1)
    down, up = -slopes[:, :-2] / f_diff[:-1], slopes[:, 2:] / f_diff[1:]
    return torch.clamp_min(torch.minimum(down, up), 0.0)


def smooth_size(n: int) -> int:
    """The smallest ``2^a 3^b 5^c >= n`` with ``a >= 4``: a frame's FFT length that runs fast (61 frames of 370
    samples on one thread: 115 us at 370 = 2 * 5 * 37, 81 at the odd 375, 32-33 at 384 or 400; 400, the
    recipes' ``n_fft``, is its own size, so unwarped views stay exact)."""
    return _fft_size(n, 4)


@functools.lru_cache(maxsize=512)
def warped_mel_matrix(
    n: int, size: int, factor: float, sample_rate: int, f_min: float, f_max: float, n_mels: int
) -> torch.Tensor:
    """``[2 * (size // 2 + 1), n_mels]``: the mel filters at the output frequencies ``factor * k * sample_rate /
    size`` of a ``size``-point FFT of ``n`` input samples, times the resampling's power ``1 / factor ** 2`` and
    ``n / size`` (a zero-padded FFT samples the same spectrum ``size / n`` times as densely), each row twice:
    it weighs the squared real and imaginary parts of a bin (``interleaved_power``)."""
    freqs = torch.arange(size // 2 + 1, dtype=torch.float64) * (factor * sample_rate / size)
    mel = mel_triangles(freqs, f_min, f_max, n_mels) * (n / size / factor**2)
    return mel.repeat_interleave(2, dim=0).float()


def interleaved_power(spec: torch.Tensor, mel2: torch.Tensor) -> torch.Tensor:
    """``spec [..., F]`` (complex) through the mel matrix ``mel2 [2F, n_mels]`` of ``warped_mel_matrix``:
    the squares of the real and imaginary parts summed by the matrix product itself (a sum over a last
    dimension of 2 costs more than the squares)."""
    parts = torch.view_as_real(spec)
    return parts.reshape(*parts.shape[:-2], -1).square() @ mel2


def biquad_power(kind: str, freqs: np.ndarray, sample_rate: int, freq: float, q: float, gain_db: float = 0.0):
    """``|H(e^{jw})|^2`` of ``biquad_coefficients(kind, ...)`` at ``freqs [F]`` (Hz), float64 ``[F]`` (NumPy:
    a few hundred numbers, where a torch op's fixed cost would dominate)."""
    (a0, a1, a2), (b0, b1, b2) = biquad_coefficients(kind, sample_rate, freq, q, gain_db)
    w = freqs * (2.0 * math.pi / sample_rate)
    cos1, cos2 = np.cos(w), np.cos(2.0 * w)
    num = b0 * b0 + b1 * b1 + b2 * b2 + 2.0 * (b0 * b1 + b1 * b2) * cos1 + 2.0 * b0 * b2 * cos2
    den = a0 * a0 + a1 * a1 + a2 * a2 + 2.0 * (a0 * a1 + a1 * a2) * cos1 + 2.0 * a0 * a2 * cos2
    return num / den


@functools.lru_cache(maxsize=1024)
def _offsets(n: int) -> torch.Tensor:
    return torch.arange(n) - n // 2


def frame_positions(n: int, frames: int, hop: int, n_samples: int, tempo: float, shift: int) -> torch.Tensor:
    """``[frames, n]`` input sample positions (relative to the crop) of a warped view's analysis frames.

    Output frame ``j`` covers output samples ``j * hop - n_fft / 2 ..`` (``center=True``); its ``n`` input
    samples are consecutive around input position ``round(tempo * (j * hop - shift))``. Where a frame reaches
    past the view's edges, a sample's output time is reflected as ``center=True``'s reflect padding reflects
    it, then mapped back to the input through the shift and the tempo (rounded to a sample). The frame
    centres and the edge frames in NumPy (a few thousand numbers), the ``[frames, n]`` grid in one torch op."""
    centres = np.arange(frames, dtype=np.float64) * hop
    positions = torch.from_numpy(np.round((centres - shift) * tempo).astype(np.int64))[:, None] + _offsets(n)
    reach = (n // 2) / tempo + 1  # output samples a frame spans on either side of its centre
    last = n_samples - 1
    head = min(frames, math.ceil(reach / hop))  # frames j with j * hop < reach
    tail = max(head, min(frames, math.floor((last - reach) / hop) + 1))  # frames from here on reach past the end
    for rows in (slice(0, head), slice(tail, frames)):
        if rows.stop > rows.start:
            out_time = np.abs(centres[rows, None] + (np.arange(n) - n // 2) / tempo)
            out_time = np.where(out_time > last, 2 * last - out_time, out_time)
            positions[rows] = torch.from_numpy(np.round((out_time - shift) * tempo).astype(np.int64))
    return positions


def warped_power(
    wav: torch.Tensor,
    start: int,
    limit: int,
    positions: torch.Tensor,
    mel: torch.Tensor,
    window: torch.Tensor,
) -> torch.Tensor:
    """``[frames, n_mels]`` mel power of one warped view: the input ``wav [T]`` at ``start + positions [frames,
    n]`` (zero where a position lies outside ``[0, limit)`` or past the clip), windowed, FFT'd at
    ``smooth_size(n)``, through ``mel`` (``warped_mel_matrix``)."""
    frames, n = positions.shape
    span = wav[start : start + max(0, limit)]
    # One gather: positions outside the span read one of the two zeros around it.
    source = torch.nn.functional.pad(span, (1, 1))
    samples = source.index_select(0, (positions.reshape(-1) + 1).clamp_(0, span.shape[0] + 1)).reshape(frames, n)
    return interleaved_power(torch.fft.rfft(samples.mul_(window), n=smooth_size(n)), mel)


def reverberate_power_rows(power: torch.Tensor, rirs: Sequence[torch.Tensor], hop: int, n_fft: int,
                           mel: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """``power [N, frames, n_mels]`` of each row convolved over time with its RIR's mel power per hop-long
    segment (``mel [n_fft // 2 + 1, n_mels]``: the output's mel matrix), cut to ``frames`` and rescaled to the
    row's total power. Silent rows stay silent."""
    rows, frames, n_mels = power.shape
    lags = max(math.ceil(r.shape[0] / hop) for r in rirs)
    segments = torch.zeros(rows, lags * hop, dtype=power.dtype)
    for i, rir in enumerate(rirs):
        segments[i, : rir.shape[0]] = rir
    spec = torch.fft.rfft(segments.reshape(rows, lags, hop), n=n_fft)
    # Each mel band's mean power response: the filters' weights normalised to sum 1 (a flat segment of energy e
    # gives e in every band, as it adds e to every bin's expected power).
    weights = mel / mel.sum(0, keepdim=True).clamp_min(1e-12)
    energy = (spec.real.square() + spec.imag.square()) @ weights  # [N, lags, n_mels]
    n = _fft_size(frames + lags - 1)
    wet = torch.fft.irfft(torch.fft.rfft(power, n, dim=1) * torch.fft.rfft(energy, n, dim=1), n, dim=1)
    wet = wet[:, :frames].clamp_min_(0.0)
    total_in, total_out = power.sum((1, 2), keepdim=True), wet.sum((1, 2), keepdim=True)
    return wet * (total_in / total_out.clamp_min(1e-30))


def mean_square(power: torch.Tensor, mel_sum: float, window_energy: float) -> torch.Tensor:
    """Each row's waveform mean square estimated from its mel power ``[N, frames, n_mels]``: a frame's
    expected bin power is ``mean square * window energy`` and the mel filters weigh ``mel_sum`` bins in all
    (exact for white noise)."""
    frames = power.shape[1]
    return power.sum((1, 2)) / (frames * mel_sum * window_energy)


@functools.lru_cache(maxsize=1024)
def hann_window(n: int, win_length: int) -> torch.Tensor:
    """``torch.stft``'s window for ``n_fft = n``: a periodic Hann of ``win_length`` centred in ``n`` zeros
    (cached: a view's window length follows its resampling factor)."""
    left = (n - win_length) // 2
    return torch.nn.functional.pad(torch.hann_window(win_length), (left, n - win_length - left))
