"""A flow that holds a GPU slot for a while and prints its window (run as a subprocess)."""

import json
import sys
import time

from prefect import flow

from flows.runtime.gpu import gpu_slot


@flow(name="gpu-gate-probe")
def probe(name: str, hold: float) -> dict:
    with gpu_slot(name) as clock:
        t0 = time.time()
        time.sleep(hold)
        t1 = time.time()
    return {"name": name, "start": t0, "end": t1, "mode": clock.mode}


if __name__ == "__main__":
    print("RESULT " + json.dumps(probe(sys.argv[1], float(sys.argv[2]))), flush=True)
