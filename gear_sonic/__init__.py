"""gear_sonic: universal-token whole-body control for the Unitree G1 (SONIC-style)."""

import os

# OpenMP's default busy-waiting makes torch's idle threads spin against the MuJoCo stepping threads
# (measured up to 30x slower training on 2 cores); passive waiting costs nothing measurable here.
# Read when OpenMP first starts, so setting it before any torch op is enough; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
