"""The dependency-free core every layer may import: :class:`Features` (the encoder -> objective contract),
stable seeding (:mod:`multiview.core.seeding`), the process's place in a run (:mod:`multiview.core.dist`),
torch's CPU thread count (:mod:`multiview.core.threads`), the one WAV reader (:mod:`multiview.core.wav`) and the
version. It imports torch, numpy and the standard library only (soundfile lazily, for the WAVs the stdlib cannot
read), never another multiview layer."""
