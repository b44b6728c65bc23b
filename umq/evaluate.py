"""`python -m umq.evaluate`: the command-line entry point kept at its documented name. The code lives in
:mod:`umq.training.evaluate` (training and evaluation are kept apart from the live code)."""
from umq.training.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
