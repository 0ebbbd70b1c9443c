"""A model service as a real process (`python -m tests.held_service generator|evaluator|trainer`) whose first
piece of model work can be held, so that a test kills (SIGKILL) or freezes (SIGSTOP) it mid-call.

With SEAL_TEST_HOLD_FILE set, the first generation (generator), adapter evaluation (evaluator; the baseline
is not held) or training (trainer) writes that file and then waits for ever, inside the call, on the model
thread. A process started again with the same file finds it there and holds nothing: the restarted service
does the work. Without the variable the service is the plain `python -m services.<name>`.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

FOREVER = threading.Event()


def _hold(marker: Path) -> None:
    try:
        with marker.open("x") as handle:  # only the first call of the first process holds
            handle.write(str(os.getpid()))
    except FileExistsError:
        return
    FOREVER.wait()


def main(service: str) -> None:
    hold = os.environ.get("SEAL_TEST_HOLD_FILE")
    if service == "generator":
        from services.generator import __main__ as entry
        from services.generator.server import GeneratorServicer as Servicer

        method = "_generate"
    elif service == "evaluator":
        from services.evaluator import __main__ as entry
        from services.evaluator.server import EvaluatorServicer as Servicer

        method = "_fetch"
    elif service == "trainer":
        from services.trainer import __main__ as entry
        from services.trainer.server import TrainerServicer as Servicer

        method = "_train_group"
    else:
        raise SystemExit(f"unknown service {service!r}: generator, evaluator or trainer")
    if hold:
        marker, original = Path(hold), getattr(Servicer, method)

        def held(self, *args, **kwargs):
            if method != "_fetch" or args[0]:  # the evaluator: adapters only, never the baseline
                _hold(marker)
            return original(self, *args, **kwargs)

        setattr(Servicer, method, held)
    entry.main()


if __name__ == "__main__":
    main(sys.argv[1])
