"""midlevel: audio models that explain themselves through mid-level perceptual concepts.

    >>> import midlevel
    >>> model = midlevel.load()                     # default model (see midlevel.list_models())
    >>> expl = model.explain(midlevel.example_clip())
    >>> expl.to_frame()                              # contribution of each concept to each target
"""

from .audio import example_clip, load_audio
from .config import FrontendConfig, ModelConfig
from .errors import MidlevelError
from .model import TwoStageModel
from .results import Explanation, Prediction
from .zoo import list_models, load

__version__ = "0.1.0"

__all__ = [
    "Explanation", "FrontendConfig", "MidlevelError", "ModelConfig", "Prediction", "TwoStageModel",
    "example_clip", "list_models", "load", "load_audio", "__version__",
]
