"""The dependency-free core every layer may import: :class:`Features` (the encoder -> objective contract),
stable seeding (:mod:`multiview.core.seeding`), the process's place in a run (:mod:`multiview.core.dist`) and the
version. It imports torch and the standard library only, never another multiview layer."""
