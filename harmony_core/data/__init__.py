"""Audio-visual clips: the synthetic world with exact ground truth, and datasets (synthetic and
folders of real videos)."""

from .clip import AVEvent, Clip
from .datasets import VIDEO_EXTENSIONS, FolderAVDataset, SyntheticAVDataset, load_av_file
from .synthetic import FAMILIES, SceneSpec, WorldConfig, describe, generate_clip, num_frames_for_seconds

__all__ = [
    "AVEvent", "Clip", "FAMILIES", "SceneSpec", "WorldConfig", "describe", "generate_clip", "num_frames_for_seconds",
    "SyntheticAVDataset", "FolderAVDataset", "load_av_file", "VIDEO_EXTENSIONS",
]
