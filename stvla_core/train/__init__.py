"""Full training of ST-VLA-S (from scratch) on simulator demonstrations."""

from stvla_core.train.config import UNNORM_KEY, TrainConfig
from stvla_core.train.pack import PackConfig, load_pack, prepare_pack

__all__ = ["UNNORM_KEY", "PackConfig", "TrainConfig", "load_pack", "prepare_pack", "train"]


def __getattr__(name: str):  # the trainer pulls in the model; import it when asked for
    if name == "train":
        from stvla_core.train.trainer import train

        return train
    raise AttributeError(name)
