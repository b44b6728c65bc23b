"""`python -m umq.train`: the command-line entry point kept at its documented name. The code lives in
:mod:`umq.training.train` (training and evaluation are kept apart from the live code)."""
from umq.training.train import main

if __name__ == "__main__":
    raise SystemExit(main())
