"""Fault injection for crash tests: die at a named point, as a power cut would.

``SPARSELABEL_FAULT=NAME`` makes the process SIGKILL itself the first time it
reaches ``fault_point(NAME)``. The points are the boundaries and the insides of
the loop's steps (see ``loop.cycle``) and the moment before a ledger commit.
Unset (always, outside tests) it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "SPARSELABEL_FAULT"


def fault_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
