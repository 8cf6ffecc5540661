"""Bilibili's released AnimeReward (bilibili/Index-anisora ``reward/``) on transformers classes:
``layout`` (which file each dimension reads), ``checkpoints`` (weights-only loading and key
mapping), ``models`` (the six architectures), ``preprocess`` (the release's inputs) and ``reward``
(``AnisoraReward``: scoring, gallery, save/load)."""
