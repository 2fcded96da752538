"""Running the claims' arms: one `runner.run` per (config, seed), shared between claims, in parallel.

A run lives in `runs_dir/<key>/` (its TensorBoard logs too), keyed by its config; a finished run
is read back, not trained again, so an interrupted `sideways-reproduce` resumes. Runs go to
worker processes, one per core with one thread each.

This module imports no TensorFlow at load time: a worker sets its thread counts first.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import time
from typing import Callable, Optional, Sequence

from sideways_tf.reproduce import footage, probes
from sideways_tf.reproduce.claims import FOOTAGE_DATA, Arm, Claim

METRICS_FILE = "metrics.json"
SIZES = ("full", "tiny")
TINY = {"num_examples": 32, "epochs": 1, "steps_per_epoch": 2, "validation_steps": 1, "batch_size": 8}
"""`--size tiny`: two steps of batch 8 and one evaluation batch per run (a test of the machinery)."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One run: an arm of a claim with one seed, its resolved config, and the claim's probe (None: training)."""

    claim: str
    arm: str
    seed: int
    config: object  # training.config.Config
    probe: Optional[str] = None

    @property
    def key(self) -> str:
        return run_key(self.config) + (f"-{self.probe}" if self.probe else "")


KEY_FIELDS_ADDED = {"train_examples": None, "masking": True}
"""Config fields added after runs were first recorded, with their defaults: left out of a run's key
while at them, so that earlier runs keep their keys (a runs folder resumes across versions)."""


def run_key(config) -> str:
    """A short digest of every field of the config (equal configs share a run)."""
    fields = {k: v for k, v in dataclasses.asdict(config).items()
              if k not in KEY_FIELDS_ADDED or v != KEY_FIELDS_ADDED[k]}
    text = json.dumps(fields, sort_keys=True, default=list)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def sized(config, size: str):
    """`config` at `size`: as it is (`"full"`) or `TINY` (fidelity probes then every step)."""
    if size not in SIZES:
        raise ValueError(f"`size` must be one of {', '.join(map(repr, SIZES))}; got {size!r}.")
    if size == "full":
        return config
    changes = dict(TINY)
    if config.fidelity_every:
        changes["fidelity_every"] = 1
    return dataclasses.replace(config, **changes)


def plan(claims: Sequence[Claim], seeds: int, size: str, runs_dir: str) -> list[Job]:
    """Every run the claims need: per claim, per arm, seeds 0..seeds-1.

    Footage is prepared (once, under `runs_dir`) for the claims that need it, and each "wide"
    arm gets the width that matches its reference arm's parameter count.
    """
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ValueError(f"`seeds` must be a positive integer; got {seeds!r}.")
    jobs = []
    for claim in claims:
        root = None
        if claim.data == FOOTAGE_DATA:
            root = footage.prepare(os.path.join(runs_dir, footage.FOLDER))
            footage.prepare_dataset(root, tfds_dir(runs_dir))
        for arm in claim.arms:
            width = _matched_width(claim, arm, size) if arm.match_parameters_of else None
            for seed in range(seeds):
                config = sized(claim.config(arm, seed), size)
                if root is not None:
                    config = dataclasses.replace(config, root_dir=root)
                if width is not None:
                    config = dataclasses.replace(config, width=width)
                jobs.append(Job(claim.name, arm.name, seed, config, claim.probe))
    return jobs


def _matched_width(claim: Claim, arm: Arm, size: str) -> float:
    """The `width` at which `arm`'s model has as many parameters as its reference arm's (within a unit's rounding)."""
    from sideways_tf.models.vgg import matching_width
    from sideways_tf.training import runner

    reference = sized(claim.config(claim.arm(arm.match_parameters_of), 0), size)
    target = runner.build_model(reference).count_params()
    base = sized(claim.config(arm, 0), size)

    def count(width: float) -> int:
        return runner.build_model(dataclasses.replace(base, width=width)).count_params()

    return round(matching_width(count, target, iterations=12), 4)


def execute(jobs: Sequence[Job], runs_dir: str, workers: int = 1, print_fn: Optional[Callable] = print) -> dict:
    """Trains every distinct run of `jobs` (reading back finished ones); returns `{key: metrics}`.

    Args:
      jobs: from `plan`.
      runs_dir: where the runs go.
      workers: parallel worker processes (1: in this process).
      print_fn: where a line per finished run goes (None: silent).
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"`workers` must be a positive integer; got {workers!r}.")
    distinct = {}
    for job in jobs:
        distinct.setdefault(job.key, job)
    results, pending = {}, []
    for key, job in distinct.items():
        cached = read_metrics(os.path.join(runs_dir, key))
        if cached is not None:
            results[key] = cached
        else:
            pending.append(job)
    say = print_fn or (lambda *_: None)
    say(f"{len(distinct)} runs ({len(results)} already done), {workers} at a time; runs in {runs_dir}")
    start = time.perf_counter()

    def report(job: Job, metrics: dict) -> None:
        results[job.key] = metrics
        done = len(results) - (len(distinct) - len(pending))
        elapsed = time.perf_counter() - start
        left = elapsed / done * (len(pending) - done)
        outcome = "diverged" if metrics["diverged"] else ", ".join(
            f"{m} {metrics[m]:.4f}" for m in ("accuracy", "loss", "receptive_field")
            if m in metrics and math.isfinite(metrics[m]))
        say(f"[{done}/{len(pending)}] {job.claim}/{job.arm} seed {job.seed}: {outcome} "
            f"({metrics['minutes']:.1f} min; about {left / 60:.0f} min left)")

    if workers == 1:
        for job in pending:
            report(job, run_one(job.config, os.path.join(runs_dir, job.key), job.probe))
        return results
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
        futures = {pool.submit(run_one, job.config, os.path.join(runs_dir, job.key), job.probe): job
                   for job in pending}
        for future in concurrent.futures.as_completed(futures):
            report(futures[future], future.result())
    return results


def _one_thread() -> None:
    """A worker's TensorFlow uses one thread for its ops (set before TensorFlow is imported)."""
    os.environ["TF_NUM_INTRAOP_THREADS"] = "1"
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def tfds_dir(runs_dir: str) -> str:
    """Where the runs' prepared tfds datasets go (the footage's), shared by every run."""
    return os.path.join(runs_dir, "tfds")


def read_metrics(folder: str) -> Optional[dict]:
    """A finished run's metrics, or None."""
    path = os.path.join(folder, METRICS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def run_one(config, folder: str, probe: Optional[str] = None) -> dict:
    """One run, `train_run` or the named probe (`probes.PROBES`), its metrics written to `folder/metrics.json`
    (the only writer of that file: a run without it is unfinished)."""
    metrics = train_run(config, folder) if probe is None else probes.PROBES[probe](config)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, METRICS_FILE), "w") as f:
        json.dump(metrics, f, indent=1)
    return metrics


def train_run(config, folder: str) -> dict:
    """Trains one run in `folder` and returns its metrics.

    A run stopped by a non-finite loss or gradient is a result, not an error: it is marked
    diverged and scores chance accuracy.

    Returns:
      `{"accuracy" | "loss", "history": {...}, "parameters", "diverged", "minutes",
      "cosine_units": [per unit], "cosine_top", "cosine_bottom", "cosine_mean"}` (cosines with
      fidelity probes only).
    """
    import logging

    from absl import logging as absl_logging

    from sideways_tf.training import runner

    absl_logging.set_verbosity(absl_logging.ERROR)  # tfds' and TensorFlow's notices, once per run and worker
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    start = time.perf_counter()
    data_dir = tfds_dir(os.path.dirname(folder))
    try:
        results = runner.run(config, folder, data_dir=data_dir, verbose=0)
        metrics = {**results["evaluation"], "history": results["history"], "parameters": results["parameters"],
                   "diverged": False}
    except ValueError as error:
        if not str(error).startswith("training stopped"):
            raise
        metrics = {"loss": math.nan, "history": {}, "parameters": None, "diverged": True}
        if not config.frame_prediction:
            metrics["accuracy"] = 1.0 / config.num_classes
    if config.fidelity_every and not metrics["diverged"]:
        metrics.update(cosines(os.path.join(folder, "train"), config.epochs))
    metrics["minutes"] = (time.perf_counter() - start) / 60
    return metrics


def cosines(log_dir: str, epochs: int) -> dict:
    """Each unit's cosine to exact backprop, averaged over the last epoch's probes (`fidelity/unit{k}`)."""
    from sideways_tf.training.logs import read_scalars

    scalars = read_scalars(log_dir)
    units = sorted((int(tag.rsplit("unit", 1)[1]), tag) for tag in scalars if tag.startswith("fidelity/unit"))
    per_unit = []
    for _, tag in units:
        values = scalars[tag][1]
        last = values[-max(1, len(values) // max(1, epochs)):]
        per_unit.append(float(sum(last) / len(last)))
    if not per_unit:
        return {}
    return {"cosine_units": per_unit, "cosine_top": per_unit[-1], "cosine_bottom": per_unit[0],
            "cosine_mean": sum(per_unit) / len(per_unit)}


def claim_values(claim: Claim, jobs: Sequence[Job], results: dict) -> dict:
    """`{(arm, metric): [per seed]}` of one claim's runs (the `verdict.Values` its checks read)."""
    mine = sorted((j for j in jobs if j.claim == claim.name), key=lambda j: j.seed)
    return run_values({arm.name: [results[j.key] for j in mine if j.arm == arm.name] for arm in claim.arms})


def run_values(runs: dict) -> dict:
    """`{(arm, metric): [per seed]}` from `{arm: [a run's metrics, in seed order]}`: every number of each run,
    with `with_derived`'s."""
    values: dict = {}
    for arm, metrics in runs.items():
        for run in metrics:
            for metric, value in with_derived(run).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    values.setdefault((arm, metric), []).append(float(value))
    return values


def with_derived(run: dict) -> dict:
    """A run's metrics and `train_accuracy`: its last epoch's training accuracy (what the papers plot for
    the frame rate and the learning rates), or its held-out accuracy (chance) where it diverged."""
    curve = run.get("history", {}).get("accuracy")
    if run.get("diverged") or not curve:
        return {**run, "train_accuracy": run["accuracy"]} if "accuracy" in run else dict(run)
    return {**run, "train_accuracy": float(curve[-1])}
