"""The top layer: the daemon that wires the front door, the pipeline and the embedded API
together, and the operator CLI. Nothing imports ``service``."""
