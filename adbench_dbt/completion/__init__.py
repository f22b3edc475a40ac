"""The completion family: backbones that fill a window's centred hole M times, and the scorers over completions.

backbone.py (interface), scorers.py (MCD, hole MSE, DMSE), deepfill*.py + critics.py + trainer.py +
official_checkpoints.py (the DeepFill inpainter of PICARD and DMSE), telea.py (classical), hfpic/ (ICT).
"""
