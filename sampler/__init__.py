"""Image generation from a checkpoint (base model + LoRA chain), with diagnostics; never imports Django."""
