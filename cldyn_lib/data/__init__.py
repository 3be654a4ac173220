"""Data: where each data set is found (mirror, cache, download), and its loaders.

``fetch`` resolves files; ``articles`` (CNN/DailyMail and the GPT-NeoX tokenizer) and
``documents`` (tokenised pools, windows, vocabularies) serve Yang et al.; ``omniglot`` serves
Frati et al.; ``cifar10`` serves Yang et al.'s vision experiments. Imports no model or engine.
"""
