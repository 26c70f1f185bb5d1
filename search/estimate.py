"""How long a search may take, for ``--dry-run``: a range scaled from the seconds this project measured
(``bench/RESULTS.md``), with every assumption printed beside it.

It is a bound, not a prediction.  Stages already in the cache count zero; a missing stage counts its steps at the
measured seconds per step (scaled by its batch size) and its Ray Train job a launch.  The search counts, per trial,
a launch and its adaptation steps at the measured seconds per step (scaled by the frames a step encodes), trials
running ``searcher.max_concurrent`` at a time.  The low end is ASHA stopping every trial but one at its first rung,
the high end every trial running all its steps (ASHA's worst case, and what ``scheduler.type: none`` does), in
waves.  The figures were measured on a 2-core CPU with the small CNN at 64 px; for another encoder, image size or a
GPU there is no measured step, and the estimate says so and counts the launches alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from search.space_spec import SearchSpec


@dataclass(frozen=True)
class Figures:
    """Measured seconds the estimate scales to a space, and the setting they were measured in."""

    #: Where the figures come from, as the estimate prints it.
    source: str
    encoder: str
    image_size: int
    #: Seconds per adaptation step, by schedule, for a step of ``step_frames`` clip frames (clips x frames per clip).
    step_s: Mapping[str, float]
    step_frames: int
    #: Seconds from a trial's start to its first step (Ray Train launch, loading the stages and the world), low-high.
    launch_s: tuple[float, float]
    #: Seconds to make the proxy world, per rendered frame (source, target at 2T frames, validation).
    world_s_per_frame: float
    #: Seconds per training step of each shared stage (a relation counts per transformer), at the given batch size.
    stage_step_s: Mapping[str, tuple[float, int]] = field(default_factory=dict)
    #: The fraction of these seconds the same work took on a faster CPU: the low end of every step's time.
    faster: float = 1.0


#: ``bench/RESULTS.md`` on the project's 2-core CPU (small CNN, 64 px): "Time per stage on CPU" (2026-12-01, one
#: thread: world 37 s for 4992 frames, prior 46 s / 600 steps, motion 38 s / 200, 3 relations 17 s / 200, source
#: 197 s / 1200, a round-robin step 0.27 s), the weighted schedule's 0.36 s per step (2 threads, 4 clips of 16
#: frames), and the launch: 10.2 s from a trial's start to its first step, one trial at a time (section 6, "Trial
#: launch overhead", 2026-12-05; the high end allows two launching at once on 2 cores).  A faster 2-core CPU
#: (2026-12-02) trained the same stages in 114 s instead of 335 s, and stepped the round robin in 0.09 s instead of
#: 0.27 s.
CPU_2CORE = Figures(
    source="bench/RESULTS.md's two 2-core CPUs, small_cnn at 64 px",
    encoder="small_cnn",
    image_size=64,
    step_s={"weighted": 0.36, "round_robin": 0.27},
    step_frames=4 * 16,
    launch_s=(10.0, 20.0),
    world_s_per_frame=37.0 / 4992,
    stage_step_s={
        "prior": (46.0 / 600, 256),
        "motion": (38.0 / 200, 64),
        "relation": (17.0 / (3 * 200), 64),
        "source": (197.0 / 1200, 32),
    },
    faster=114.0 / 335.0,
)

#: The shared stages' Ray Train jobs and the stages each trains: ``search.stages.STAGE_JOBS`` where the cluster holds
#: two stage jobs at once, ``search.stages.ONE_STAGE_JOB`` where it holds one.
STAGE_JOBS = {"world+prior": ("world", "prior"), "motion+relations": ("motion", "relation"), "source": ("source",)}
ONE_STAGE_JOB = {"all": ("world", "prior", "motion", "relation", "source")}


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2.5 h``: as precise as an estimate deserves."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def measured_for(figures: Figures, encoder: str, image_size: int, gpus: float) -> bool:
    """Whether ``figures`` were measured in this setting: same encoder, same image size, CPU only."""
    return encoder == figures.encoder and image_size == figures.image_size and gpus == 0


def trial_steps(spec: SearchSpec) -> tuple[int, int]:
    """Adaptation steps of the shortest trial ASHA may leave (stopped at its first rung: ``grace_period``
    evaluations) and of a trial that runs to the end (the most steps the space allows)."""
    fewest, most = (int(value) for value in spec.knob_range("steps"))
    first_rung = spec.scheduler.grace_period * int(spec.knob_range("eval_every")[0])
    return min(first_rung, fewest), most


def step_seconds(spec: SearchSpec, figures: Figures) -> tuple[float, float] | None:
    """Seconds of one adaptation step of this space's slowest trial (its slowest schedule, its largest batch), on
    the faster and the slower CPU, or None when the figures were not measured for its encoder, image size and
    devices."""
    world = spec.stages.world
    if not measured_for(figures, spec.stages.source.encoder, world.image_size, spec.resources.trial_gpus):
        return None
    tuned = {param.name: param for param in spec.params}
    schedules = tuned["schedule"].choices if "schedule" in tuned else (spec.adapt_config((), {}).schedule,)
    frames = int(spec.knob_range("batch_clips")[1]) * world.clip_len
    slow = max(figures.step_s[schedule] for schedule in schedules) * frames / figures.step_frames
    return slow * figures.faster, slow


def search_seconds(
    trials: int,
    concurrency: int,
    steps: tuple[int, int],
    step_s: tuple[float, float],
    launch_s: tuple[float, float],
    asha: bool,
) -> tuple[float, float]:
    """(low, high) seconds of the search.  ``steps``: a trial's fewest and most steps (``trial_steps``);
    ``step_s`` and ``launch_s``: (fast, slow) seconds.  High: every trial runs all its steps, ``concurrency`` at a
    time, in waves, at the slow figures.  Low, at the fast figures: with ASHA, every trial but one stops at its first
    rung and the work packs perfectly into the concurrent slots; without it, the same waves."""
    concurrency = max(1, min(concurrency, trials))
    fewest, most = steps
    waves = math.ceil(trials / concurrency)
    high = waves * (launch_s[1] + most * step_s[1])
    longest = launch_s[0] + most * step_s[0]
    if not asha:
        return waves * longest, high
    work = (trials - 1) * (launch_s[0] + fewest * step_s[0]) + longest
    return max(longest, work / concurrency), high


def stage_seconds(
    spec: SearchSpec, missing: Sequence[str], figures: Figures, side_by_side: bool = True
) -> tuple[float, float] | None:
    """(low, high) seconds to train the ``missing`` stages (``search.stages.missing_stages`` names: ``world``,
    ``relation flip``, ...) one after the other, plus a launch per Ray Train job (``side_by_side``: the cluster
    holds two stage jobs at once, so they run as ``STAGE_JOBS``, else as one); (0, 0) when all are cached, None
    when the figures were not measured for this setting (another encoder or image size, a GPU, real data to read).
    The figures are one thread's: the low end lets the job's ``resources.stage_cpus`` threads share the work
    perfectly, on the faster CPU."""
    if not missing:
        return 0.0, 0.0
    configs, world = spec.stages, spec.stages.world
    if not measured_for(figures, configs.source.encoder, world.image_size, spec.resources.stage_gpus):
        return None
    if "world" in missing and not configs.data.is_proxy:
        return None
    kinds = [name.split()[0] for name in missing]
    seconds = 0.0
    if "world" in kinds:
        frames = (world.source_clips + 2 * world.target_clips + world.val_clips) * world.clip_len
        seconds += frames * figures.world_s_per_frame
    for kind in ("prior", "motion", "relation", "source"):
        config = getattr(configs, kind)
        per_step, batch = figures.stage_step_s[kind]
        seconds += kinds.count(kind) * config.steps * per_step * config.batch_size / batch
    plan = STAGE_JOBS if side_by_side else ONE_STAGE_JOB
    jobs = sum(any(kind in stages for kind in kinds) for stages in plan.values())
    threads = max(1.0, spec.resources.stage_cpus)
    return seconds * figures.faster / threads + jobs * figures.launch_s[0], seconds + jobs * figures.launch_s[1]


def estimate_lines(
    spec: SearchSpec, missing: Sequence[str], figures: Figures = CPU_2CORE, side_by_side: bool = True
) -> list[str]:
    """The estimate and what it assumes, one line each, for ``--dry-run`` to print (``side_by_side``: as
    ``stage_seconds``)."""
    lines = [
        f"time estimate, scaled from {figures.source}: low ends at the faster CPU's speed, high ends at the slower's "
        f"(a loaded machine is several times slower still)"
    ]
    stages = stage_seconds(spec, missing, figures, side_by_side)
    if not missing:
        lines.append("  stages: every stage is cached: 0 s")
    elif stages is None:
        lines.append(
            f"  stages: {len(missing)} to train; not estimated (no figures measured for "
            f"{_setting(spec.stages.source.encoder, spec.stages.world.image_size, spec.resources.stage_gpus)}"
            f"{'' if spec.stages.data.is_proxy else ', or for reading real data'})"
        )
    else:
        lines.append(
            f"  stages: {len(missing)} to train, {_span(stages)}: each stage's measured seconds per step scaled by "
            f"this space's steps and batch sizes, one stage after the other, at one thread (high) or "
            f"resources.stage_cpus threads sharing perfectly (low), and a launch of {_span(figures.launch_s)} per "
            f"Ray Train job"
        )
    search = spec.searcher
    concurrency = min(search.max_concurrent, search.num_trials)
    steps = trial_steps(spec)
    step_s = step_seconds(spec, figures)
    each = f"each a launch of {_span(figures.launch_s)} (Ray Train, loading the stages and the world)"
    if step_s is None:
        low = math.ceil(search.num_trials / concurrency) * figures.launch_s[0]
        setting = _setting(spec.stages.source.encoder, spec.stages.world.image_size, spec.resources.trial_gpus)
        lines.append(
            f"  search: at least {duration(low)}: {search.num_trials} trials, {concurrency} at a time, {each}; "
            f"adaptation not estimated (no step measured for {setting}): add up to {steps[1]} steps per trial at "
            f"the seconds of one step (python -m bench.throughput measures it)"
        )
        return lines
    asha = spec.scheduler.type == "asha"
    low, high = search_seconds(search.num_trials, concurrency, steps, step_s, figures.launch_s, asha)
    stopped = f"ASHA stopping every trial but one at its first rung ({steps[0]} steps)" if asha else "no early stops"
    lines.append(
        f"  search: {_span((low, high))}: {search.num_trials} trials, {concurrency} at a time "
        f"(searcher.max_concurrent), {each} and {step_s[0]:.2f}-{step_s[1]:.2f} s per adaptation step (measured at "
        f"{figures.step_frames} clip frames a step, scaled to this space's batch); low: {stopped}; high: every "
        f"trial runs all {steps[1]} steps (ASHA's worst case)"
    )
    lines.append(
        "  not counted: the pre-filter, the stage-quality measurement and the evaluations (a fraction of a trial each)"
    )
    if stages is not None:
        lines.append(f"  total: {_span((stages[0] + low, stages[1] + high))}")
    return lines


def _span(seconds: tuple[float, float]) -> str:
    low, high = (duration(value) for value in seconds)
    return low if low == high else f"{low} to {high}"


def _setting(encoder: str, image_size: int, gpus: float) -> str:
    return f"{encoder} at {image_size} px on {'GPU' if gpus else 'CPU'}"
