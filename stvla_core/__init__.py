"""ST-VLA Studio's inference core: episodes -> rolling buffer -> tracks -> depth -> traced depth
maps -> ST-VLA policy. Importable without gradio."""

__version__ = "0.1.0"
