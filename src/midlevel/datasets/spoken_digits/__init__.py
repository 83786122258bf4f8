"""The controlled spoken-digit corpus (issue 33): speech synthesisers from Debian say the ten digits, with
labels known by construction (phonetic concepts and their timing, Praat's speaker measures, sex).

A generator, like ``datasets.controlled``: training and inference never import it. It needs the ``corpus``
extra (pedalboard, librosa, praat-parselmouth) and the Debian packages in ``voices.DEBIAN_PACKAGES``.
"""

from .build import build_spoken_digits

__all__ = ["build_spoken_digits"]
