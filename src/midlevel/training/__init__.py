"""Training: the 2019 paper's setups (A2Mid, A2Mid2E, A2Mid2E-Joint, A2E) and fine-tuning.

scikit-learn, scipy and tqdm come with the ``train`` extra; importing this package without them says so in one line.
"""

from .._extras import require_all

require_all(("sklearn", "scipy", "tqdm"), "train", "training")

from .finetune import finetune  # noqa: E402
from .loops import TrainSettings, train_network  # noqa: E402
from .recipes import train_family  # noqa: E402

__all__ = ["TrainSettings", "finetune", "train_family", "train_network"]
