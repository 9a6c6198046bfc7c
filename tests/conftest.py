"""Test-session set-up shared by every test module."""

import os

# Same as gear_sonic/__init__.py, but before any test module imports torch: busy-waiting OpenMP
# threads slow everything down on the 2-core CI machines.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# W&B never reaches a server here.
os.environ.setdefault("WANDB_MODE", "offline")
