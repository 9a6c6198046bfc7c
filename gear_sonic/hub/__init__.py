"""Hub layer: model card, saving a Hub-ready folder, pushing with `huggingface_hub.HfApi`."""

from gear_sonic.hub.model_card import render_model_card
from gear_sonic.hub.push import push_to_hub, save_for_hub

__all__ = ["push_to_hub", "render_model_card", "save_for_hub"]
