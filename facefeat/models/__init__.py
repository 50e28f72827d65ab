"""torch nn.Modules for facefeat's architectures."""
