"""The waveform transforms of ``multiview.views.waveform`` over many rows at once: one call per transform for
the views of a whole batch.

Each function gives, row by row, what its one-waveform form gives (to float rounding;
tests/views/test_waveform_rows.py checks every one against it): the rows' own STFT frames, filter states,
convolution lengths and istft window sums are kept apart, so a row's result does not depend on the other rows.
What is shared is the call: an FFT's fixed cost on one thread (an MKL descriptor per call: an rfft of 32,000
samples costs ~0.35 ms alone and ~0.07 ms per row in a batch of 64) and the ~265 small ops of a view with every
transform on (~1.3 ms of a 4.2 ms view) are paid once per batch instead of once per view.

Rows of different lengths come as a list of 1-D tensors (``stretch_rows``, ``warp_rows``); rows of one length
as a ``[N, T]`` tensor (``biquad_rows``, ``reverberate_rows``, ``normalize_rms_rows``).
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Sequence

import torch

from multiview.views.waveform import _fft_size, _hann, _resampler, biquad_coefficients, warp_factors


def _frames_mask(counts: torch.Tensor, width: int) -> torch.Tensor:
    """``[N, width, 1]`` bool: True at frames ``< counts[n]`` (a row's own frames)."""
    return (torch.arange(width) < counts[:, None]).unsqueeze(-1)


def _stft_rows(xs: Sequence[torch.Tensor], n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``torch.stft(x, n_fft, n_fft // 4, hann, center=True)`` in one call, time-major: ``([N,
    frames + 2, F]`` (contiguous: the memory order torch.stft computes; its ``[N, F, frames]`` is a transposed
    view of it), frame counts ``[N]``), frames past a row's own count zero (at least two for every row: the
    silence that ``_phase_vocoder_rows`` reads past a row's end). Each row is reflect-padded by itself (as
    ``center=True`` pads it) before the rows are stacked with zeros, so its own frames see only its samples."""
    hop, half = n_fft // 4, n_fft // 2
    width = max(x.shape[-1] for x in xs) + n_fft + 2 * hop
    buf = torch.zeros(len(xs), width, dtype=xs[0].dtype)
    for i, x in enumerate(xs):
        buf[i, : x.shape[-1] + n_fft] = torch.nn.functional.pad(x[None], (half, half), mode="reflect")[0]
    spec = torch.stft(buf, n_fft, hop, window=_hann(n_fft, buf.dtype), center=False, return_complex=True)
    spec = spec.transpose(1, 2)
    counts = torch.tensor([1 + x.shape[-1] // hop for x in xs])
    return spec.masked_fill_(~_frames_mask(counts, spec.shape[1]), 0.0), counts


def _phase_vocoder_rows(spec: torch.Tensor, counts: torch.Tensor, rates: Sequence[float]):
    """``waveform._phase_vocoder(spec[n, :counts[n]].T, rates[n]).T`` of every row, time-major: ``([N,
    frames_out, F], output frame counts [N])``, frames past a row's count zero. ``spec [N, frames + 2, F]``
    (``_stft_rows``; overwritten): its last two frames and a row's frames past its count zero, so the frames
    after a row's last one read as silence. The same unit-phasor product, each row's own time steps
    ``arange(0, counts[n], rates[n])`` gathered from one padded grid; the grid past a row's steps points at
    the zero frame, so it comes out zero."""
    # Each row's own torch.arange: its values round differently from i * rate (25 * 0.6 -> 14.999...).
    row_steps = [torch.arange(0, int(c), r, dtype=spec.real.dtype) for c, r in zip(counts, rates)]
    out_counts = torch.tensor([s.shape[0] for s in row_steps])
    zero_frame = spec.shape[1] - 2
    steps = torch.nn.utils.rnn.pad_sequence(row_steps, batch_first=True, padding_value=zero_frame)  # [N, width]
    i0 = steps.long()
    alphas = (steps - i0).unsqueeze(-1)
    # Time-major, so a gather or the running product moves whole contiguous frames (frequency-major, they stride
    # through memory: the vocoder ran 1.06-1.31x longer that way, index_select included). In place where it can be, and no complex-by-real arithmetic: on one thread a complex
    # tensor times a real one runs ~10x slower than complex times complex (a casting loop; an explicit
    # real-to-complex copy is cheap), complex abs ~2x slower than the square root of the squares, and a fresh
    # tensor of a few MB costs its page faults.
    parts = torch.view_as_real(spec)
    mag = (parts[..., 0].square() + parts[..., 1].square()).sqrt_()
    silent = mag == 0  # torchaudio's angle(0) is 0: a unit phasor of 1
    unit = spec.mul_(mag.masked_fill(silent, 1.0).reciprocal_().to(spec.dtype)).add_(silent.to(spec.dtype))
    turn = unit[:, 1:].mul(unit[:, :-1].conj())  # input frame j -> j + 1
    phasor = torch.cat([unit[:, :1], _frames_at(turn, i0[:, :-1])], dim=1).cumprod_(1)
    amp = _frames_at(mag, i0).lerp_(_frames_at(mag, i0 + 1), alphas)
    phasor.mul_(amp.to(phasor.dtype))
    return phasor, out_counts


def _frames_at(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[n, index[n, j]]`` for ``x [N, frames, F]`` and ``index [N, width]``: ``[N, width, F]``, one
    ``index_select`` of whole frames (``gather`` with an expanded index runs element by element: ~2x slower)."""
    n, frames, n_freq = x.shape
    flat = (index + torch.arange(n)[:, None] * frames).reshape(-1)
    return x.reshape(n * frames, n_freq).index_select(0, flat).reshape(n, -1, n_freq)


def _overlap_add(blocks: torch.Tensor, hop: int) -> torch.Tensor:
    """``[N, frames, n_fft]`` blocks ``hop`` apart, summed: ``[N, n_fft + hop * (frames - 1)]`` (``n_fft`` a
    multiple of ``hop``): one strided add per overlap instead of ``fold`` (col2im, ~3x slower here)."""
    n, frames, n_fft = blocks.shape
    k = n_fft // hop
    out = blocks.new_zeros(n, frames + k - 1, hop)
    for j in range(k):
        out[:, j : j + frames] += blocks[:, :, j * hop : (j + 1) * hop]
    return out.reshape(n, -1)


@functools.lru_cache(maxsize=512)
def _window_sum(n_fft: int, frames: int, dtype: torch.dtype) -> torch.Tensor:
    """The squared Hann windows of ``frames`` frames, overlap-added: istft's normaliser for that many frames."""
    return _overlap_add(_hann(n_fft, dtype).pow(2).expand(1, frames, n_fft), n_fft // 4)[0]


def _istft_rows(spec: torch.Tensor, counts: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Each row's ``torch.istft(spec[n, :counts[n]].T, n_fft, n_fft // 4, hann, center=True)`` (``spec [N,
    frames, F]``, time-major) with its own window sum: ``[N, n_fft // 2 + hop * (frames - 1)]`` (torch.istft's
    output with ``length`` at least that: its end is not trimmed), zero past a row's own frames (where
    torch.istft zero-pads)."""
    hop = n_fft // 4
    y = _overlap_add(torch.fft.irfft(spec, n=n_fft, dim=-1).mul_(_hann(n_fft, spec.real.dtype)), hop)
    envelope = torch.zeros_like(y)
    for i, count in enumerate(counts.tolist()):
        own = _window_sum(n_fft, count, y.dtype)
        envelope[i, : own.shape[0]] = own
    y = torch.where(envelope > 1e-11, y / envelope.clamp_min(1e-11), torch.zeros((), dtype=y.dtype))
    return y[:, n_fft // 2 :]


def stretch_rows(xs: Sequence[torch.Tensor], rates: Sequence[float], n_fft: int = 512) -> list[torch.Tensor]:
    """``waveform.time_stretch(x, rate, n_fft)`` of each row ``x [T_n]`` (any lengths, rates != 1): one STFT,
    one phase vocoder and one overlap-add for all rows. Rows ``[round(T_n / rate_n)]``, each at its input RMS."""
    lengths = [x.shape[-1] for x in xs]
    padded = [x if x.shape[-1] >= n_fft else torch.nn.functional.pad(x, (0, n_fft - x.shape[-1])) for x in xs]
    spec, counts = _stft_rows(padded, n_fft)
    spec, out_counts = _phase_vocoder_rows(spec, counts, rates)
    y = _istft_rows(spec, out_counts, n_fft)
    out = []
    for i, (x, length, rate) in enumerate(zip(padded, lengths, rates)):
        full, out_len = round(x.shape[-1] / rate), max(1, round(length / rate))
        row = y[i, : min(full, out_len)]
        if row.shape[-1] < out_len:
            row = torch.nn.functional.pad(row, (0, out_len - row.shape[-1]))
        # The vocoder loses level when it slows down; keep the input's RMS (over its unpadded length).
        rms_in = x.pow(2).sum().div(length).sqrt()
        out.append(row * (rms_in / row.pow(2).mean().sqrt().clamp_min(1e-12)))
    return out


def resample_rows(xs: Sequence[torch.Tensor], factors: Sequence) -> list[torch.Tensor]:
    """``waveform.speed_perturb(x, factor)`` of each row (``factors``: the ``Fraction``s of
    ``waveform.rational``): rows with the same factor are zero-padded to one length and resampled together
    (torchaudio pads each row with zeros itself, so the padding changes none of a row's own samples)."""
    out: list[torch.Tensor] = list(xs)
    groups: dict = defaultdict(list)
    for i, factor in enumerate(factors):
        if factor != 1:
            groups[factor].append(i)
    for factor, rows in groups.items():
        orig, new = factor.numerator, factor.denominator
        width = max(xs[i].shape[-1] for i in rows)
        buf = torch.stack([torch.nn.functional.pad(xs[i], (0, width - xs[i].shape[-1])) for i in rows])
        y = _resampler(orig, new, buf.dtype)(buf)
        for j, i in enumerate(rows):
            out[i] = y[j, : math.ceil(new * xs[i].shape[-1] / orig)]
    return out


def warp_rows(
    xs: Sequence[torch.Tensor],
    speeds: Sequence[float],
    stretches: Sequence[float],
    semitones: Sequence[float],
    n_fft: int = 512,
) -> list[torch.Tensor]:
    """``waveform.warp(x, speed, stretch, semitones, n_fft)`` of each row: the rows that need the vocoder
    stretched together, then resampled by factor groups."""
    plans = [warp_factors(s, t, p) for s, t, p in zip(speeds, stretches, semitones)]
    out = list(xs)
    vocoded = [i for i, (_, rate) in enumerate(plans) if rate != 1.0]
    if vocoded:
        stretched = stretch_rows([xs[i] for i in vocoded], [plans[i][1] for i in vocoded], n_fft)
        for i, y in zip(vocoded, stretched):
            out[i] = y
    return resample_rows(out, [factor for factor, _ in plans])


def biquad_rows(
    kind: str,
    x: torch.Tensor,
    sample_rate: int,
    freqs: Sequence[float],
    q: float,
    gains_db: Sequence[float] | None = None,
) -> torch.Tensor:
    """``waveform._biquad(kind, x[n], sample_rate, freqs[n], q, gains_db[n])`` of each row of ``x [N, T]``:
    one unclamped ``lfilter`` with a filter per row (``batching=True``: row n through filter n only)."""
    import torchaudio.functional as F

    gains = gains_db if gains_db is not None else [0.0] * len(freqs)
    coefficients = [biquad_coefficients(kind, sample_rate, f, q, g) for f, g in zip(freqs, gains)]
    a = torch.tensor([c[0] for c in coefficients], dtype=x.dtype)
    b = torch.tensor([c[1] for c in coefficients], dtype=x.dtype)
    return F.lfilter(x, a, b, clamp=False, batching=True)


def reverberate_rows(x: torch.Tensor, rirs: Sequence[torch.Tensor]) -> torch.Tensor:
    """``waveform.reverberate(x[n], rirs[n])`` of each row of ``x [N, T]``: each row's non-zero span and the
    RIR part that reaches its ``T`` samples, convolved by one rfft of all rows and RIRs at a common fast length
    (a linear convolution is exact at any length >= span + RIR - 1), cut to ``T`` and rescaled to the row's RMS.
    Silent rows stay silent."""
    length = x.shape[-1]
    if x.shape[0] == 0:
        return x
    active = x != 0
    has = active.any(1)
    first = torch.where(has, active.int().argmax(1), 0).tolist()
    last = torch.where(has, length - active.flip(1).int().argmax(1), 0).tolist()
    rirs = [r[: length - f].to(x.dtype) for r, f in zip(rirs, first)]
    n = _fft_size(max(max(e - f + r.shape[-1] - 1 for f, e, r in zip(first, last, rirs)), 1))
    buf = torch.zeros(2, x.shape[0], n, dtype=x.dtype)
    for i, (f, e, r) in enumerate(zip(first, last, rirs)):
        buf[0, i, : e - f] = x[i, f:e]
        buf[1, i, : r.shape[-1]] = r
    spectra = torch.fft.rfft(buf, n)
    wet = torch.fft.irfft(spectra[0] * spectra[1], n)
    y = torch.zeros_like(x)
    for i, f in enumerate(first):
        k = min(n, length - f)  # the convolution ends before the row's end: zeros after it
        y[i, f : f + k] = wet[i, :k]
    scale = x.pow(2).mean(-1, keepdim=True).sqrt() / y.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)
    return torch.where(has[:, None], y * scale, x)


def normalize_rms_rows(x: torch.Tensor, targets_db: Sequence[float]) -> torch.Tensor:
    """``waveform.normalize_rms(x[n], targets_db[n])`` of each row of ``x [N, T]`` (silence stays silent)."""
    target = torch.tensor(targets_db, dtype=x.dtype)[:, None]
    rms = x.pow(2).mean(-1, keepdim=True).sqrt()
    return x * (10.0 ** (target / 20.0) / rms.clamp_min(1e-8)) * (rms > 1e-8)
