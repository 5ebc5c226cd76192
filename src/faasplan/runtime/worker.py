"""``python -m faasplan.runtime.worker --redis URL``: join a pool of faasplan workers.

The implementation lives in :mod:`faasplan.runtime.workerproc` so that importing
:mod:`faasplan.runtime` does not import this launcher.
"""

from __future__ import annotations

from faasplan.runtime.workerproc import worker_main

__all__ = ["worker_main"]

if __name__ == "__main__":
    raise SystemExit(worker_main())
