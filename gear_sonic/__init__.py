"""gear_sonic: universal-token whole-body control for the Unitree G1 (SONIC-style)."""

__version__ = "0.1.0"
