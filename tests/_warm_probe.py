"""Preloaded into a warm starter by tests/test_warm.py (never imported by the package).

It records numpy's global RNG state without changing any code path: an audit hook (sys.addaudithook), installed
when the server imports this module, fires in every forked job when it opens a file named `warm-probe.yaml` (the
test passes it as --params, so the job opens it from its command handler, after the child has been set up) and,
when the job's environment has WARM_PROBE_OUT, appends that job's pid and the head of its numpy RNG state to that
file. WARM_PROBE_SERVER_OUT, in the server's environment, gets the
server's own state at import.
"""
import json
import os
import sys

import numpy.random

_done = set()


def _state() -> list:
    kind, keys, pos, *_ = numpy.random.get_state()
    return [int(k) for k in keys[:4]] + [int(pos)]


def _hook(event, args):
    if event != "open" or not str(args[0]).endswith("warm-probe.yaml") or os.getpid() in _done:
        return
    out = os.environ.get("WARM_PROBE_OUT")
    if not out:
        return
    _done.add(os.getpid())
    with open(out, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "state": _state()}) + "\n")


if os.environ.get("WARM_PROBE_SERVER_OUT"):
    with open(os.environ["WARM_PROBE_SERVER_OUT"], "w", encoding="utf-8") as fh:
        json.dump({"pid": os.getpid(), "state": _state()}, fh)
sys.addaudithook(_hook)
