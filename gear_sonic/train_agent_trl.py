"""Training entry point with SONIC's name and Hydra interface (see gear_sonic/cli/train.py)."""

import sys
from pathlib import Path

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != here]
    from gear_sonic.cli.train import main

    raise SystemExit(main())
