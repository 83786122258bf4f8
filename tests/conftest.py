import numpy as np
import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def sine(freq: float, seconds: float, sr: int = 22050, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def kill_when_written(code: str, marker, timeout: float) -> None:
    """Run ``python -c code`` and SIGKILL it as soon as ``marker`` exists (or it ends, or ``timeout`` s
    pass): a run cut off mid-way with no chance to clean up, for the resume tests."""
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + timeout
    while not marker.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
