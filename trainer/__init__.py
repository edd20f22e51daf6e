"""Preference optimisation (Diffusion-DPO with LoRA) on exported datasets; never imports Django. Filled in by the trainer issue."""
