"""The network and its math: model, activations, losses, optimizer, schedules, gradcheck, metrics.

NumPy only: no click, no Pillow, no files.
"""
