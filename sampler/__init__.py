"""Image generation from a checkpoint (base model + LoRA chain); never imports Django. Filled in by the sampler issue."""
