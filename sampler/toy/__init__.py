"""The toy world: captioned procedural images and tiny diffusers pipelines that learn them on a CPU."""
