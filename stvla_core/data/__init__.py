"""Demonstration datasets: the scripted expert's episodes written as a LeRobot v3.0 dataset."""

from stvla_core.data.generate import GenerateConfig, generate
from stvla_core.data.lerobot_writer import DEPTH_SCALE_M, LeRobotWriter

__all__ = ["DEPTH_SCALE_M", "GenerateConfig", "LeRobotWriter", "generate"]
