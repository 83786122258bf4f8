"""The controlled phonocardiogram corpus (issue 34): simulated heart sounds whose concepts are known by
construction (heart rate and its variability, S1/S2 sizes, the S2 split, murmurs, S3, S4, the noise), each
beat segmented, in the PhysioNet/CinC 2016 layout so that ``load_physionet2016`` reads it.

A generator, like ``datasets.controlled``: training and inference never import it. It needs numpy, scipy
and soundfile (and uses ``espeak-ng`` for talking in the background where it is installed).
"""

from .build import build_pcg_corpus

__all__ = ["build_pcg_corpus"]
