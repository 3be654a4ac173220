"""Models: GPT-NeoX built by transformers (and its batched forward), the pre-trained
stand-in, Frati et al.'s ConvNet, a small ResNet, and the image models of *Beyond language*.
Imports the ground floor and ``data`` only.
"""
