"""Speaker concepts measured with Praat (through ``praat-parselmouth``), the field's reference tool.

The spoken-digit corpus measures them on each clip's dry synthesis, before the recording conditions (so the
label describes the voice, not the room or the codec); a recorded data set (AudioMNIST) is measured as it is:

| concept | Praat measurement |
|---|---|
| ``f0_median_hz`` | median of the pitch track (``To Pitch``, 75-500 Hz) over voiced frames |
| ``f0_range_st`` | 5th to 95th percentile of that track, in semitones |
| ``f1_hz``, ``f2_hz``, ``f3_hz`` | mean of the first three formants (``To Formant (burg)``, 5 formants up to 5.5 kHz) over voiced frames |
| ``hnr_db`` | mean harmonics-to-noise ratio (``To Harmonicity (cc)``) over frames where it is defined |

A value Praat cannot measure (a clip without voiced frames) is NaN, and the builder leaves it out of training.
"""

from __future__ import annotations

import numpy as np

SPEAKER_CONCEPTS = ("f0_median_hz", "f0_range_st", "f1_hz", "f2_hz", "f3_hz", "hnr_db")
PITCH_FLOOR, PITCH_CEILING = 75.0, 500.0


def speaker_measures(samples: np.ndarray, sr: int) -> dict[str, float]:
    """``SPEAKER_CONCEPTS`` of one dry clip."""
    from .._extras import require

    parselmouth = require("parselmouth", "corpus", "Praat's speaker measures")
    sound = parselmouth.Sound(samples.astype(np.float64), sampling_frequency=sr)
    pitch = sound.to_pitch(pitch_floor=PITCH_FLOOR, pitch_ceiling=PITCH_CEILING)
    f0 = pitch.selected_array["frequency"]
    voiced = f0 > 0
    out = {name: float("nan") for name in SPEAKER_CONCEPTS}
    if voiced.sum() >= 3:
        lo, median, hi = np.percentile(f0[voiced], [5, 50, 95])
        out["f0_median_hz"], out["f0_range_st"] = float(median), float(12 * np.log2(hi / lo))
        formant = sound.to_formant_burg(max_number_of_formants=5, maximum_formant=5500.0)
        times = pitch.xs()[voiced]
        for k in (1, 2, 3):
            values = np.array([formant.get_value_at_time(k, t) for t in times])
            values = values[np.isfinite(values)]
            out[f"f{k}_hz"] = float(values.mean()) if len(values) else float("nan")
    hnr = sound.to_harmonicity_cc().values.ravel()
    hnr = hnr[hnr > -200]  # Praat marks unvoiced frames with -200 dB
    if len(hnr):
        out["hnr_db"] = float(hnr.mean())
    return out
