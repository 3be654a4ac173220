"""Frati et al. (Frati, Traft, Clune, Cheney 2025): zapping, optimizers and sequential learning.

``zapping`` (resampling the head), ``pretrain`` and ``episodic`` (the four pre-training
modes), ``transfer`` and ``transfer_engine`` (transfer to novel characters), ``batched``
(many transfer runs as one model), ``divergence`` and ``divergence_measures`` (how far a
shock travels), ``optimizers``, ``sequence``, ``sequence_sweeps`` and ``boundary``
(optimizers in sequential learning), the studies, their summaries and the figures. Never
imports the ``cyclic`` wing.
"""
