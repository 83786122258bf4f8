"""Explain an audio file with an exported midlevel model: onnxruntime and numpy, no torch.

    midlevel export-onnx NAME_OR_DIR model.onnx
    python examples/onnx_inference.py model.onnx song.flac

The graph does the windowing and averaging itself (see ``midlevel.export``), so one call per
track gives the same numbers as ``model.explain``. All this script must do is decode the file
the way midlevel does (channels averaged to mono, float32, resampled with soxr "HQ") and read
names from the model's metadata. Needs: numpy, onnxruntime, soundfile; soxr for files at
another sample rate.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import onnxruntime as ort
import soundfile as sf


def read_mono(path: str, sample_rate: int) -> np.ndarray:
    """Decode to mono float32 at ``sample_rate``, or stop with a message saying what to do."""
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1, dtype=np.float32)
    if rate != sample_rate:
        try:
            import soxr
        except ImportError:
            sys.exit(f"{path}: sampled at {rate} Hz but the model needs {sample_rate} Hz; "
                     "install soxr (pip install soxr) or convert the file first")
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def run(model_path: str, audio_path: str) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
    """(metadata, outputs of the one track by output name, the waveform fed to the model)."""
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    wave = read_mono(audio_path, meta["sample_rate"])
    names = [o.name for o in session.get_outputs()]
    outputs = session.run(None, {"wave": wave[None]})
    return meta, {name: value[0] for name, value in zip(names, outputs)}, wave


def table(meta: dict, out: dict[str, np.ndarray]) -> str:
    """Concepts as rows (value, then contribution to each target), intercept and prediction last."""
    targets = meta["target_names"]
    cols = "".join(f"{t:>10}" for t in targets)
    if "contributions" not in out:  # black-box baseline: targets only
        return f"{'':<20}{cols}\n{'prediction':<20}" + "".join(f"{v:>10.3f}" for v in out["targets"])
    width = max(20, *(len(c) + 2 for c in meta["concept_names"]))
    lines = [f"{'concept':<{width}}{'value':>8}{cols}"]
    for k, name in enumerate(meta["concept_names"]):
        terms = "".join(f"{v:>+10.3f}" for v in out["contributions"][:, k])
        lines.append(f"{name:<{width}}{out['concepts'][k]:>8.2f}{terms}")
    intercept = out["targets"] - out["contributions"].sum(axis=-1)  # the graph computes targets this way
    lines.append(f"{'intercept':<{width}}{'':>8}" + "".join(f"{v:>10.3f}" for v in intercept))
    lines.append(f"{'prediction':<{width}}{'':>8}" + "".join(f"{v:>10.3f}" for v in out["targets"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="ONNX file written by `midlevel export-onnx`")
    parser.add_argument("audio", help="WAV, FLAC, OGG or MP3 file")
    args = parser.parse_args(argv)
    meta, out, wave = run(args.model, args.audio)
    sr = meta["sample_rate"]
    n_windows = len(out.get("window_concepts", out.get("window_targets")))
    print(f"{args.audio}: {len(wave) / sr:.1f} s, {n_windows} window(s); model {meta['model_name']}")
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if wave.size else 0.0
    flags = [f for f, on in (("padded", len(wave) < round(meta["window_seconds"] * sr)),
                             ("silent", rms == 0.0 or 20 * np.log10(rms) < -60)) if on]
    for line in meta.get("notes", []) + ([f"flags: {', '.join(flags)}"] if flags else []):
        print(f"  {line}")
    print(table(meta, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
