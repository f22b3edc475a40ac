"""HFPIC (Wan et al., ICCV 2021, the ICT code) as a completion backbone: a bidirectional transformer over a
32 x 32 palette-token image (stage 1) and a guided upsampler (stage 2), grayscale-native, batched over windows x M.
"""
