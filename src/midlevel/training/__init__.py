"""Training: the 2019 paper's setups (A2Mid, A2Mid2E, A2Mid2E-Joint, A2E) and fine-tuning."""

from .finetune import finetune
from .loops import TrainSettings, train_network
from .recipes import train_family

__all__ = ["TrainSettings", "finetune", "train_family", "train_network"]
