"""Scale-out: the variants of a sweep or a layer analysis run by Ray workers, one resident model each.

`--workers N` starts a local Ray runtime (loopback as its node address) with N workers; `--ray auto` or
`--ray ray://host:port` joins an existing cluster. Each worker is a Ray actor that opens the
checkpoints once (an `InPlaceMerger`) and runs every job it is handed on that model, re-merging in
place. The driver hands out jobs as workers free up and gets each result back as soon as it is done,
so the caller writes it at once. A worker that dies (killed, out of memory) loses only its current
job, which is retried once on another worker; a job that fails again, or raises, is reported failed
with its error while the rest go on.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from merge_models.errors import MergeError
from merge_models.recipe import Recipe

if TYPE_CHECKING:
    from harness_ext.remerge import InPlaceMerger

DOCS = "docs/scale-out.md"
# What workers get of this process's environment: the project's folders and switches, and offline mode.
FORWARDED = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
ATTEMPTS = 2  # a job whose worker died is tried once more, on another worker where there is one
POLL_S = 0.5


class ScaleOutError(MergeError):
    """Ray or its workers cannot run the jobs here (an environment problem: exit status 1)."""

    exit_code = 1


@dataclass(frozen=True)
class ScaleOut:
    """Where the jobs run: `workers` local workers, or a Ray cluster at `address`; per-worker resources."""

    workers: int | None = None
    address: str | None = None
    gpus_per_worker: float | None = None  # None: 1 where the runtime has GPUs, else 0
    cpus_per_worker: float = 1.0

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise MergeError(f"--workers: {self.workers} is not a worker count; give 1 or more")
        if self.cpus_per_worker <= 0 or (self.gpus_per_worker is not None and self.gpus_per_worker < 0):
            raise MergeError("--cpus-per-worker/--gpus-per-worker: must be positive (GPUs may be 0); "
                             "e.g. --cpus-per-worker 1 --gpus-per-worker 0.5")


def scale_out(workers: int | None, address: str | None, gpus_per_worker: float | None,
              cpus_per_worker: float | None) -> ScaleOut | None:
    """The command line's scale-out options, or None when the jobs run in this process (neither given)."""
    if workers is None and address is None:
        if gpus_per_worker is not None or cpus_per_worker is not None:
            raise MergeError("--gpus-per-worker/--cpus-per-worker: only apply to Ray workers; "
                             "add --workers N (local) or --ray ADDRESS (cluster)")
        return None
    return ScaleOut(workers, address, gpus_per_worker, 1.0 if cpus_per_worker is None else cpus_per_worker)


@dataclass(frozen=True)
class Job:
    """One unit of work: `call(merger)` runs on a worker's resident model; `key` is unique, `label` is shown."""

    key: str
    label: str
    call: Callable[[InPlaceMerger], Any]


def required_paths(recipe: Recipe, **folders: Path) -> dict[str, str]:
    """What every worker must see, by the name a refusal gives it: the named folders and the recipe's local
    checkpoints."""
    paths = {name.replace("_", " "): str(Path(folder).resolve()) for name, folder in folders.items()}
    data = os.environ.get("MERGED_VLM_DATA", "").strip()
    if data:
        paths["data folder ($MERGED_VLM_DATA)"] = str(Path(data).expanduser().resolve())
    refs = [("vlm.model", recipe.vlm), ("base.model", recipe.base),
            *[(f"sources.{i}.model", ref) for i, ref in enumerate(recipe.sources)]]
    for field, ref in refs:
        if ref is not None and Path(ref.model).is_dir():
            paths[field] = str(Path(ref.model).resolve())
    return paths


def unseen(paths: dict[str, str]) -> str | None:
    """The first of `paths` this machine cannot see, as one line naming it and the fix; None if all are there."""
    for name, path in paths.items():
        if not Path(path).is_dir():
            from ray.util import get_node_ip_address

            return (f"worker on node {get_node_ip_address()} cannot see the {name} {path}: put it on storage "
                    f"every node sees, at the same path (see {DOCS})")
    return None


class Worker:
    """A Ray actor's state: one model, opened at `start` after checking what it must see."""

    def __init__(self, recipe: Recipe, paths: dict[str, str]) -> None:
        self.recipe, self.paths = recipe, paths
        self.merger: InPlaceMerger | None = None

    def start(self) -> tuple[int, str | None]:
        """Check the shared paths, then open the checkpoints and load the model; (pid, refusal or None)."""
        problem = unseen(self.paths)
        if problem is None and self.merger is None:
            from harness_ext.remerge import InPlaceMerger

            self.merger = InPlaceMerger(self.recipe)
        return os.getpid(), problem

    def run(self, call: Callable[[InPlaceMerger], Any]) -> Any:
        """Run one job on the resident model (opened first if this actor was restarted)."""
        if self.merger is None:
            _, problem = self.start()
            if problem:
                raise ScaleOutError(problem)
        return call(self.merger)


@contextmanager
def runtime(scale: ScaleOut) -> Iterator[None]:
    """Ray started locally (loopback as its node address, for this run only) or joined at `scale.address`, and shut down after; a
    runtime this process already started (ray.init) is used as it is and left running."""
    try:
        import ray
    except ImportError:
        raise ScaleOutError("--workers/--ray: Ray is not installed; pip install 'merged-vlm[ray]'") from None
    if ray.is_initialized():
        yield
        return
    try:
        if scale.address:
            ray.init(address=scale.address, log_to_driver=False)
        else:
            count = scale.workers or 1
            ray.init(address="local", num_cpus=max(1, round(count * scale.cpus_per_worker)),
                     include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ScaleOutError(f"--ray {scale.address or 'local'}: cannot start or join Ray ({_line(exc)}); check the "
                            "address (auto, or ray://host:port of a running cluster)") from None
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def pool(scale: ScaleOut, recipe: Recipe, paths: dict[str, str],
         log: Callable[[str], None] = print) -> Iterator[list[Any]]:
    """Ray workers holding the recipe's model, started, checked (see `start_workers`) and stopped after."""
    import ray

    with runtime(scale):
        workers: list[Any] = []
        try:
            workers.extend(start_workers(scale, recipe, paths, log))
            yield workers
        finally:
            for worker in workers:
                ray.kill(worker)


def start_workers(scale: ScaleOut, recipe: Recipe, paths: dict[str, str],
                  log: Callable[[str], None] = print) -> list[Any]:
    """Ray actors holding the recipe's model, started and checked; refuses with one line when a worker cannot see
    `paths` or the runtime lacks the resources asked for (then no worker is left running). Call inside `runtime`."""
    import ray

    total = ray.cluster_resources()
    gpus = scale.gpus_per_worker if scale.gpus_per_worker is not None else (1.0 if total.get("GPU", 0) else 0.0)
    count = scale.workers or _fitting(total, scale.cpus_per_worker, gpus)
    for resource, each in (("CPU", scale.cpus_per_worker), ("GPU", gpus)):
        if each and count * each > total.get(resource, 0) + 1e-9:
            raise ScaleOutError(f"--workers: {count} workers x {each:g} {resource} need {count * each:g} {resource}s, "
                                f"the Ray runtime has {total.get(resource, 0):g}; lower --workers or "
                                f"--{resource.lower()}s-per-worker")
    env = {k: v for k, v in os.environ.items() if k.startswith("MERGED_VLM_") or k in FORWARDED}
    actor = ray.remote(Worker).options(num_cpus=scale.cpus_per_worker, num_gpus=gpus, max_restarts=-1,
                                       runtime_env={"env_vars": env})
    workers = [actor.remote(recipe, paths) for _ in range(count)]
    try:
        started = ray.get([w.start.remote() for w in workers])
        problems = [problem for _, problem in started if problem]
        if problems:
            raise ScaleOutError(problems[0])
    except BaseException:
        for worker in workers:
            ray.kill(worker)
        raise
    log(f"{count} Ray workers, one model each (pids {', '.join(str(pid) for pid, _ in started)})")
    return workers


def _fitting(total: dict[str, float], cpus: float, gpus: float) -> int:
    """How many workers of this size a cluster holds."""
    count = int(total.get("CPU", 0) // cpus)
    if gpus:
        count = min(count, int(total.get("GPU", 0) // gpus))
    if count < 1:
        raise ScaleOutError(f"--ray: the cluster has no room for one worker ({cpus:g} CPU, {gpus:g} GPU); "
                            "lower --cpus-per-worker/--gpus-per-worker")
    return count


def run_jobs(jobs: list[Job], workers: list[Any], on_result: Callable[[Job, Any], None],
             log: Callable[[str], None] = print, quiet: bool = False) -> dict[str, str]:
    """Hand `jobs` to `workers` as they free up, give each result to `on_result` as it arrives, in this process;
    returns {job key: one-line error} of the jobs that failed.

    A worker whose process died is restarted by Ray; it gets work again once it answers `start` (its model
    loaded). A job it held is tried once more, on another worker where there is one.
    """
    import ray
    from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

    pending, attempts, tried = deque(jobs), {j.key: 0 for j in jobs}, {j.key: set() for j in jobs}
    running: dict[Any, tuple[int, Job | None]] = {}  # job None: waiting for a restarted worker to be back
    idle, live, failed, done = list(range(len(workers))), set(range(len(workers))), {}, 0
    deaths = [0] * len(workers)  # deaths in a row, without a finished call in between
    with Board(len(jobs), len(workers), quiet) as board:
        while pending or any(job for _, job in running.values()):
            if not live:
                failed.update({job.key: "no worker left" for job in pending})
                break
            for slot in list(idle):
                job = _next_for(slot, pending, tried, len(live))
                if job is not None:
                    idle.remove(slot)
                    attempts[job.key] += 1
                    tried[job.key].add(slot)
                    running[workers[slot].run.remote(job.call)] = (slot, job)
                    board.show(slot, job.label)
                    log(f"{job.label}: on worker {slot + 1}")
            finished, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
            for ref in finished:
                slot, job = running.pop(ref)
                board.show(slot, None)
                try:
                    value = ray.get(ref)
                except RayActorError as exc:  # the process died (killed, out of memory): Ray restarts it
                    deaths[slot] += not isinstance(exc, ActorUnavailableError)
                    if deaths[slot] > ATTEMPTS + 1:
                        live.discard(slot)
                        log(f"worker {slot + 1} keeps dying ({_line(exc)}); going on without it")
                    else:
                        running[workers[slot].start.remote()] = (slot, None)  # idle again once it is back
                    if job is None:
                        time.sleep(POLL_S)
                    elif attempts[job.key] < ATTEMPTS:
                        log(f"{job.label}: worker {slot + 1} died ({_line(exc)}); retrying it on another worker")
                        pending.appendleft(job)
                    else:
                        failed[job.key] = f"worker died twice ({_line(exc)})"
                        log(f"{job.label}: failed: {failed[job.key]}")
                    continue
                except RayTaskError as exc:
                    cause = exc.cause or exc
                    failed[job.key] = f"{type(cause).__name__}: {_line(cause)}"
                    log(f"{job.label}: failed: {failed[job.key]}")
                    idle.append(slot)
                    continue
                deaths[slot] = 0
                if job is None:
                    _, problem = value
                    if problem:
                        live.discard(slot)
                        log(f"worker {slot + 1} restarted but cannot work: {problem}")
                    else:
                        idle.append(slot)
                    continue
                idle.append(slot)
                on_result(job, value)
                done += 1
            board.count(done, sum(job is not None for _, job in running.values()), len(failed))
    return failed


def _next_for(slot: int, pending: deque[Job], tried: dict[str, set[int]], live: int) -> Job | None:
    """The first pending job not yet tried on this worker (any job once it was tried on every live worker)."""
    for job in pending:
        if slot not in tried[job.key] or len(tried[job.key]) >= live:
            pending.remove(job)
            return job
    return None


def _line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


class Board:
    """One progress bar over jobs: done / running / failed, and each worker's current job."""

    def __init__(self, total: int, workers: int, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from harness_ext.cli.console import console

        self.current: list[str | None] = [None] * workers
        self.counts = "0 done, 0 running, 0 failed"
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True, disable=quiet)
        self.task = self.progress.add_task("", total=total)

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def show(self, slot: int, label: str | None) -> None:
        """Worker `slot` now runs `label` (None: idle)."""
        self.current[slot] = label
        self._draw()

    def count(self, done: int, running: int, failed: int) -> None:
        self.counts = f"{done} done, {running} running, {failed} failed"
        self.progress.update(self.task, completed=done + failed)
        self._draw()

    def _draw(self) -> None:
        workers = " | ".join(f"w{i + 1}: {label or 'idle'}" for i, label in enumerate(self.current))
        self.progress.update(self.task, description=f"{self.counts} | {workers}")
