"""Data: where each data set is found (mirror, cache, download), and its loaders.

``fetch`` resolves files; ``articles`` (CNN/DailyMail and the GPT-NeoX tokenizer) and
``documents`` (tokenised pools, windows, vocabularies) serve paper B; ``omniglot`` serves
paper A; ``cifar10`` serves paper B's vision experiments. Imports no model or engine.
"""
