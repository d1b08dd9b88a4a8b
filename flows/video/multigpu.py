"""Multi-GPU rendering: one segment on N GPUs with diffusers' context parallelism (Ulysses).

`render_parallel` checks the degree (the renderer spec's `parallel.check`), then launches
`torchrun` with N processes running this module; each process joins a torch.distributed group
(NCCL on GPUs, gloo on CPU), loads the renderer on its own GPU with the spec's one loader and
switches it to N ranks (`parallel.enable`: for ActAvatar the transformer's
`enable_parallelism(ContextParallelConfig(ulysses_degree=N))`); rank 0 writes the frames.
Ulysses splits attention heads across ranks and the frame-local audio attention needs whole
latent frames per rank, so N must divide the transformer's heads (24 for Wan2.2-5B) and the
segment's latent frames ((frames - 1) / 4 + 1).

The `selftest` payload (an all-reduce of the ranks) exercises the launch and rendezvous
without a GPU; the render payload needs CUDA and an ActAvatar checkpoint.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from flows.runtime import gpu
from flows.runtime.errors import InputError
from flows.runtime.lifetime import run_ending_with_us
from flows.video.render import request_from_job
from flows.video.render_job import RenderJob
from flows.video.renderers import (  # noqa: F401  (the Ulysses checks, re-exported)
    RenderSetup,
    check_ulysses,
    get_renderer_spec,
    latent_frames,
    transformer_heads,
)
from flows.video.segments import SegmentSpec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(nproc: int, payload: Path, port: int) -> list[str]:
    """`torchrun` on one node, rendezvous on 127.0.0.1 (static, no etcd)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc-per-node={nproc}",
        "--master-addr=127.0.0.1",
        f"--master-port={port}",
        "-m",
        "flows.video.multigpu",
        "--payload",
        str(payload),
    ]


def launch(
    nproc: int,
    payload: dict[str, Any],
    *,
    devices: list[str] | None = None,
    timeout: float = 3600.0,
) -> list[dict[str, Any]]:
    """Run `payload` on `nproc` ranks; returns each rank's JSON result (rank order)."""
    with tempfile.TemporaryDirectory(prefix="avatar-flow-cp-") as tmp:
        work = Path(tmp)
        spec = work / "payload.json"
        spec.write_text(json.dumps({**payload, "results": str(work)}))
        env = dict(os.environ)
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(
                str(gpu.physical_index(int(str(d).split(":")[-1]))) for d in devices
            )
        env.setdefault("OMP_NUM_THREADS", "1")
        # torchrun ends with us, and is stopped with SIGTERM on a timeout, so it stops its
        # workers (they run in their own sessions; SIGKILL to torchrun would orphan them).
        proc = run_ending_with_us(
            torchrun_command(nproc, spec, free_port()),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"torchrun with {nproc} processes failed (exit {proc.returncode}): "
                f"{proc.stderr[-2000:]}"
            )
        results = [json.loads((work / f"rank-{r}.json").read_text()) for r in range(nproc)]
        if payload.get("kind") == "render":
            import numpy as np

            results[0]["frames"] = np.load(work / "frames.npy")
            latents = work / "latents.npy"  # the clean latents (latent continuity)
            results[0]["latents"] = np.load(latents) if latents.is_file() else None
        return results


def render_parallel(
    spec: SegmentSpec, job: RenderJob, context: list[str], devices: list[str]
) -> tuple[Any, Any]:
    """Render one segment context-parallel on `devices`: (uint8 frames T x H x W x 3, the
    render's clean latents z x F x h x w or None). The request comes from the same record and
    continuity input (tail PNGs or the tail latents file) as an in-process render."""
    parallel = get_renderer_spec(job.renderer).parallel
    if parallel is None:
        raise InputError(
            f"the {job.renderer} renderer cannot split a segment over several GPUs",
            field="renderer",
        )
    parallel.check(job.checkpoint, spec.render_frames, len(devices))
    payload = {
        "kind": "render",
        "spec": spec.to_dict(),
        "job": job.model_dump(mode="json"),
        "context": context,
    }
    results = launch(len(devices), payload, devices=devices)
    return results[0]["frames"], results[0]["latents"]


# --- the worker (one per rank, started by torchrun) -----------------------------------------


def _init_group() -> tuple[int, int, str]:
    import torch
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), backend


def _selftest(rank: int, world: int, hold_s: float = 0.0) -> dict[str, Any]:
    """An all-reduce of the ranks, after `hold_s` seconds (a test finds the workers running)."""
    import time

    import torch
    import torch.distributed as dist

    time.sleep(hold_s)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    t = torch.tensor([float(rank + 1)], device=device)
    dist.all_reduce(t)
    return {"sum": float(t.item())}


def _render(rank: int, world: int, payload: dict[str, Any]):
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("context-parallel rendering needs CUDA")
    job = RenderJob.model_validate(payload["job"])
    spec = SegmentSpec.from_dict(payload["spec"])
    renderer_spec = get_renderer_spec(job.renderer)
    # The same loader and the same request an in-process render uses, from the same record.
    renderer = renderer_spec.load(RenderSetup(job.checkpoint, f"cuda:{rank}", job.sampling))
    renderer_spec.parallel.enable(renderer, world)
    frames = renderer.render(request_from_job(spec, job, payload["context"]))
    return frames, getattr(renderer, "last_latents", None)


def worker_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="avatar-flow context-parallel worker")
    parser.add_argument("--payload", required=True)
    args = parser.parse_args(argv)
    payload = json.loads(Path(args.payload).read_text())
    out = Path(payload["results"])
    rank, world, backend = _init_group()
    import torch.distributed as dist

    try:
        result: dict[str, Any] = {"rank": rank, "world": world, "backend": backend}
        if payload.get("kind") == "selftest":
            result.update(_selftest(rank, world, float(payload.get("hold_s", 0.0))))
        else:
            frames, latents = _render(rank, world, payload)
            if rank == 0:
                import numpy as np

                np.save(out / "frames.npy", frames)
                if latents is not None:
                    np.save(out / "latents.npy", latents)
        (out / f"rank-{rank}.json").write_text(json.dumps(result))
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    worker_main()
