"""Yang et al. (Yang, Jones, Mozer, Ren 2024): anticipatory recovery in cyclic training.

``config`` and ``state`` (one run), ``engine`` (the loop), ``result``, ``resume`` and
``estimate``; ``batched`` (many seeds as one model); ``probes`` and ``structure`` (what the
weights, gradients and activations do); ``toy`` (the toy model); ``vision`` (images);
``sweeps`` and ``figures`` (the chapters' experiments and plots). Never imports the
``sequential`` wing.
"""
