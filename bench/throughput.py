"""Trial throughput: adaptation-step images/s, bare PyTorch vs inside Ray Train, and the paper-scale GPU step.

CPU, side by side in one run (needs Ray)::

    nice -n 10 .venv/bin/python -m bench.throughput --out bench/out/throughput

runs the same loop of adaptation steps (smoke scale: ``small_cnn``, 64 px, 4 clips x 16 frames, ``block3``
trainable, one thread) in this process and inside a one-worker Ray Train run as a trial launches it (local Ray,
``ray.init(num_cpus=2)``, dashboard on), alternating ``--repeats`` times so that load from other users of the
machine falls on both; the ratio is Ray Train's images/s over bare PyTorch's.

GPU, bare PyTorch only (the GPU image has no Ray)::

    python -m bench.throughput --gpu --out bench/out/throughput-gpu

paper scale (ResNet-50 trunk from ``nlrd.models``, ``layer2`` trainable, 224 px, 8 clips x 30 frames): the
adaptation step with bf16 autocast + channels_last and in fp32, a bare ResNet-50 trunk forward+backward on the
same 240 images, peak memory of each, and 1, 2 and 4 trials (processes) packed on one GPU.  ``--gpu --device cpu
--tiny`` runs the same code path at toy size on CPU.

One adaptation step (what a trial repeats): a batch of clips, two photometric views, the LCR InfoNCE on projected
latents of both views, plus a pose-flip relation loss (frozen relation transformer on the latents against the
encoder's no-grad latents of the mirrored frames), backward, Adam.  These are ``nlrd.train.adapt``'s own pieces.
"images/s" counts input images (clips x frames per step); the encoder sees each three times (two views, mirror).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from bench import cli
from nlrd.models import ProjectionHead, RelationTransformer, build_image_encoder, set_trainable
from nlrd.relations import flip_images
from nlrd.train.adapt import info_nce, photometric


@dataclass(frozen=True)
class StepConfig:
    """What one measurement runs.  ``bare``: a plain forward+backward of the whole encoder (the hardware's
    reference) instead of the adaptation step."""

    encoder: str = "small_cnn"
    width: int = 32
    image_size: int = 64
    clips: int = 4
    frames: int = 16
    trainable_block: str = "block3"
    warmup: int = 3
    steps: int = 20
    bf16: bool = False
    channels_last: bool = False
    bare: bool = False
    device: str = "cpu"
    threads: int = 1
    seed: int = 0

    @property
    def images(self) -> int:
        return self.clips * self.frames


SMOKE = StepConfig()
PAPER = StepConfig(
    encoder="resnet50",
    width=64,
    image_size=224,
    clips=8,
    frames=30,
    trainable_block="layer2",
    warmup=5,
    steps=30,
    device="cuda",
)
TINY = {"width": 8, "image_size": 32, "clips": 2, "frames": 4, "warmup": 1, "steps": 3}


def _autocast(cfg: StepConfig) -> contextlib.AbstractContextManager:
    device_type = torch.device(cfg.device).type
    return torch.autocast(device_type, dtype=torch.bfloat16) if cfg.bf16 else contextlib.nullcontext()


def make_step(cfg: StepConfig) -> Any:
    """Build the models and a fixed synthetic batch; return a function that runs one step."""
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    encoder = build_image_encoder(cfg.encoder, latent_dim=32, width=cfg.width).to(device, memory_format=memory_format)
    params = set_trainable(encoder, "all" if cfg.bare else cfg.trainable_block)
    encoder.train()
    head = ProjectionHead(32).to(device)
    transformer = RelationTransformer(32).to(device).requires_grad_(False)
    opt = torch.optim.Adam(params + list(head.parameters()), lr=1e-4)
    size = (cfg.clips, cfg.frames, 3, cfg.image_size, cfg.image_size)
    frames = torch.randint(0, 256, size, dtype=torch.uint8, device=device)
    groups = torch.arange(cfg.clips, device=device).repeat_interleave(cfg.frames)

    def as_images(clips: torch.Tensor) -> torch.Tensor:
        return clips.flatten(0, 1).contiguous(memory_format=memory_format)

    def bare_step() -> torch.Tensor:
        with _autocast(cfg):
            loss = encoder(as_images(frames.float() / 255.0)).float().square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        return loss

    def adaptation_step() -> torch.Tensor:
        clips = frames.float() / 255.0
        view1, view2 = as_images(photometric(clips)), as_images(photometric(clips))
        with _autocast(cfg):
            z1, z2 = encoder(view1), encoder(view2)
            lcr = info_nce(head(z1.float()), head(z2.float()), groups, tau=0.07)
            with torch.no_grad():
                target = encoder(flip_images(view1)).float()
            pose = (transformer(z1.float()) - target).abs().mean()
            loss = lcr + pose
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return bare_step if cfg.bare else adaptation_step


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measure(cfg: StepConfig) -> dict[str, Any]:
    """Images/s over ``cfg.steps`` timed steps after ``cfg.warmup``, and the peak memory (GPU only)."""
    torch.set_num_threads(cfg.threads)
    cuda = torch.device(cfg.device).type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats()
    step = make_step(cfg)
    for _ in range(cfg.warmup):
        step()
    _sync(cfg.device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(cfg.steps):
        loss = step()
    _sync(cfg.device)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss in {cfg}")
    return {
        "images_per_s": cfg.images * cfg.steps / seconds,
        # Per CPU-second of this process: what the loop costs, whatever else loads a shared machine.
        "images_per_cpu_s": cfg.images * cfg.steps / cpu_seconds,
        "step_ms": 1000 * seconds / cfg.steps,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
    }


# --- CPU: bare PyTorch vs Ray Train -------------------------------------------------------------------------------


def ray_train_loop(config: dict[str, Any]) -> None:
    """Ray Train worker: the very same measurement, written where the driver reads it (Train V2's ``Result.metrics``
    stays empty for a report without a checkpoint) and reported."""
    import ray.train

    config = dict(config)
    result_path = Path(config.pop("result_path"))
    metrics = measure(StepConfig(**config))
    result_path.write_text(json.dumps(metrics))
    ray.train.report(metrics)


def measure_in_ray_train(cfg: StepConfig, storage: Path, name: str) -> tuple[dict[str, Any], float]:
    """The measurement inside a one-worker Train run, the trainer a trial uses; also the ``fit()`` wall time
    (launch included)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    from bench.throughput import ray_train_loop as loop  # by reference, also when this file runs as __main__

    result_path = (storage / f"{name}.json").resolve()
    result_path.parent.mkdir(parents=True, exist_ok=True)
    trainer = DataParallelTrainer(
        loop,
        train_loop_config={**asdict(cfg), "result_path": str(result_path)},
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": cfg.threads}),
        run_config=RunConfig(name=name, storage_path=str(storage.resolve())),
    )
    start = time.perf_counter()
    trainer.fit()
    return json.loads(result_path.read_text()), time.perf_counter() - start


def cpu_side_by_side(cfg: StepConfig, repeats: int, out: Path) -> dict[str, Any]:
    import ray

    # A cluster of our own ("local"), not one another user started; the dashboard stays on, as in the search.
    # Workers import this module by name (run as __main__, its functions would be pickled by value, torch included).
    root = str(Path(__file__).resolve().parent.parent)
    ray.init(address="local", num_cpus=2, logging_level="ERROR", runtime_env={"env_vars": {"PYTHONPATH": root}})
    try:
        bare, inside, fit_seconds = [], [], []
        for r in range(repeats):
            bare.append(measure(cfg))
            metrics, seconds = measure_in_ray_train(cfg, out / "ray", f"throughput-{os.getpid()}-{r}")
            inside.append(metrics)
            fit_seconds.append(seconds)
            ratio = inside[-1]["images_per_s"] / bare[-1]["images_per_s"]
            print(
                f"repeat {r}: bare {bare[-1]['images_per_s']:.0f} img/s, Ray Train {inside[-1]['images_per_s']:.0f} "
                f"img/s ({ratio:.1%}); fit {seconds:.1f} s",
                flush=True,
            )
    finally:
        ray.shutdown()
    ratios = [i["images_per_s"] / b["images_per_s"] for b, i in zip(bare, inside, strict=True)]
    cpu_ratios = [i["images_per_cpu_s"] / b["images_per_cpu_s"] for b, i in zip(bare, inside, strict=True)]
    return {
        "config": asdict(cfg),
        "bare": bare,
        "ray_train": inside,
        "ratios": ratios,
        "median_ratio": statistics.median(ratios),
        "cpu_ratios": cpu_ratios,
        "median_cpu_ratio": statistics.median(cpu_ratios),
        "fit_seconds": fit_seconds,
    }


def cpu_markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"Adaptation step: `{cfg['encoder']}` width {cfg['width']}, {cfg['image_size']} px, {cfg['clips']} clips x "
        f"{cfg['frames']} frames, `{cfg['trainable_block']}` trainable, {cfg['threads']} thread, {cfg['steps']} timed "
        f"steps after {cfg['warmup']} warm-up; bare and Ray Train alternated.",
        "",
        "| repeat | bare PyTorch (images/s) | inside Ray Train (images/s) | ratio | bare (images per CPU s) | "
        "inside Ray Train (images per CPU s) | ratio | fit() wall (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r, (b, i) in enumerate(zip(result["bare"], result["ray_train"], strict=True)):
        lines.append(
            f"| {r} | {b['images_per_s']:.0f} | {i['images_per_s']:.0f} | {result['ratios'][r]:.1%} | "
            f"{b['images_per_cpu_s']:.0f} | {i['images_per_cpu_s']:.0f} | {result['cpu_ratios'][r]:.1%} | "
            f"{result['fit_seconds'][r]:.1f} |"
        )
    lines.append(
        f"\nMedian ratio, wall clock: {result['median_ratio']:.1%}; per CPU second of the loop's process: "
        f"{result['median_cpu_ratio']:.1%} (target >= 95%)."
    )
    return "\n".join(lines) + "\n"


# --- GPU: paper-scale step, precision, packing ---------------------------------------------------------------------


def _packed_worker(cfg: StepConfig, barrier: Any, queue: Any) -> None:
    """One packed trial: wait for the others, then measure, so that all share the device while timed."""
    torch.set_num_threads(cfg.threads)
    cuda = torch.device(cfg.device).type == "cuda"
    torch.backends.cudnn.benchmark = cuda
    step = make_step(cfg)
    for _ in range(cfg.warmup):
        step()
    _sync(cfg.device)
    barrier.wait()
    start = time.perf_counter()
    for _ in range(cfg.steps):
        step()
    _sync(cfg.device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    queue.put({"images_per_s": cfg.images * cfg.steps / seconds, "peak_mem_gib": peak})


def packed(cfg: StepConfig, trials: int) -> dict[str, Any]:
    """``trials`` processes running the step on one device at once: total and per-trial images/s."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(trials), ctx.Queue()
    procs = [ctx.Process(target=_packed_worker, args=(cfg, barrier, queue)) for _ in range(trials)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"packed trial exited with {p.exitcode}")
    per_trial = [r["images_per_s"] for r in results]
    peaks = [r["peak_mem_gib"] for r in results if r["peak_mem_gib"] is not None]
    return {
        "trials": trials,
        "total_images_per_s": sum(per_trial),
        "per_trial_images_per_s": per_trial,
        "peak_mem_gib_per_trial": max(peaks) if peaks else None,
    }


def gpu_suite(cfg: StepConfig, packing: list[int]) -> dict[str, Any]:
    fast = replace(cfg, bf16=True, channels_last=True)
    runs = {
        "adaptation step, bf16 + channels_last": measure(fast),
        "adaptation step, fp32": measure(cfg),
        "bare trunk forward+backward, bf16 + channels_last": measure(replace(fast, bare=True)),
        "bare trunk forward+backward, fp32": measure(replace(cfg, bare=True)),
    }
    for name, r in runs.items():
        print(
            f"{name}: {r['images_per_s']:.0f} images/s, {r['step_ms']:.0f} ms/step, peak {r['peak_mem_gib']}",
            flush=True,
        )
    packs = [packed(fast, k) for k in packing]
    for p in packs:
        print(f"{p['trials']} packed: total {p['total_images_per_s']:.0f} images/s", flush=True)
    return {
        "config": asdict(cfg),
        "runs": runs,
        "packing": packs,
        "device_name": torch.cuda.get_device_name() if torch.device(cfg.device).type == "cuda" else "cpu",
    }


def gpu_markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [
        f"Device: {result['device_name']}. Step: `{cfg['encoder']}` width {cfg['width']}, {cfg['image_size']} px, "
        f"{cfg['clips']} clips x {cfg['frames']} frames, `{cfg['trainable_block']}` trainable; {cfg['steps']} timed "
        f"steps after {cfg['warmup']} warm-up. 'vs bare': against the bare trunk forward+backward at the same "
        "precision.",
        "",
        "| run | images/s | ms/step | peak memory (GiB) | vs bare |",
        "|---|---|---|---|---|",
    ]
    runs = result["runs"]
    for name, r in runs.items():
        precision = name.split(", ")[1]
        bare = runs[f"bare trunk forward+backward, {precision}"]["images_per_s"]
        lines.append(
            f"| {name} | {r['images_per_s']:.0f} | {r['step_ms']:.0f} | {fmt(r['peak_mem_gib'])} | "
            f"{r['images_per_s'] / bare:.2f} |"
        )
    lines += [
        "",
        "| trials packed (bf16 + channels_last) | total images/s | per trial | peak memory per trial (GiB) |",
        "|---|---|---|---|",
    ]
    for p in result["packing"]:
        per = ", ".join(f"{v:.0f}" for v in p["per_trial_images_per_s"])
        lines.append(f"| {p['trials']} | {p['total_images_per_s']:.0f} | {per} | {fmt(p['peak_mem_gib_per_trial'])} |")
    return "\n".join(lines) + "\n"


def arg_parser() -> argparse.ArgumentParser:
    parser = cli.script_parser("bench.throughput", __doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/out/throughput"))
    parser.add_argument("--gpu", action="store_true", help="paper-scale step, precision and packing (bare PyTorch)")
    parser.add_argument("--device", default=None, help="default: cpu, or cuda with --gpu")
    parser.add_argument("--tiny", action="store_true", help="toy sizes, to exercise the code path")
    parser.add_argument("--repeats", type=int, default=2, help="CPU: bare / Ray Train alternations")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: the mode's)")
    parser.add_argument("--pack", type=int, nargs="+", default=[1, 2, 4], help="GPU: trials packed on one device")
    return parser


def main() -> None:
    args = arg_parser().parse_args()
    cfg = PAPER if args.gpu else SMOKE
    cfg = replace(cfg, device=args.device or ("cuda" if args.gpu else "cpu"))
    if args.tiny:
        cfg = replace(cfg, **TINY)
    if args.steps:
        cfg = replace(cfg, steps=args.steps)
    args.out.mkdir(parents=True, exist_ok=True)
    header = (
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}; {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}; `python -m bench.throughput` with {' '.join(sys.argv[1:]) or 'defaults'}"
    )
    if args.gpu:
        result = gpu_suite(cfg, args.pack)
        text = gpu_markdown(result)
    else:
        result = cpu_side_by_side(cfg, args.repeats, args.out)
        text = cpu_markdown(result)
    name = "gpu" if args.gpu else "cpu"
    (args.out / f"{name}.json").write_text(json.dumps({"header": header, **result}, indent=1))
    (args.out / f"{name}.md").write_text(f"{header}\n\n{text}")
    print(text)


if __name__ == "__main__":
    main()
