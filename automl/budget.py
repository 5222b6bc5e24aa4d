"""The run's one clock: `--timeout` belongs to the run, and every stage asks this module.

The clock starts when the process started (imports and reading count). The plan, in
order: reading and preprocessing take what they take; a reserve is kept for the end
(blend, submission, report); when networks are requested, a share of what is left
after preprocessing (the recipe's `network_share`) is reserved for them, so baselines
can never starve the search; baselines run cheap first, each sized to an equal part of
what the baselines have left; the search gets everything else. Each stage records its
seconds, and the run prints and saves the breakdown.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from automl.errors import UsageError

# Reading CSVs with pandas on 2 cores: about 60 MB/s; the fixed cost covers imports,
# folds, one cheap baseline and writing the outputs.
READ_BYTES_PER_SECOND = 60e6
FIXED_SECONDS = 6.0
BLEND_SHARE = 0.05  # of the budget, at most, reserved for the blend
MAX_NETWORK_SHARE = 0.75  # of the time left after preprocessing: the most a probe's need gives the networks


def process_started() -> float:
    """time.monotonic() at the moment this process started (Linux), else now."""
    try:
        with open(f"/proc/{os.getpid()}/stat") as handle:
            ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
        age = uptime - ticks / os.sysconf("SC_CLK_TCK")
        return time.monotonic() - max(0.0, min(age, 600.0))
    except (OSError, ValueError, IndexError):
        return time.monotonic()


def peak_mib() -> float:
    """The process's peak resident memory so far, in MiB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def release_memory() -> None:
    """Hand memory a stage freed back to the system (glibc keeps freed heap pages otherwise), so
    the next stage's peak starts from what is really in use."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


@contextmanager
def frozen_heap():
    """The objects alive now kept out of the cyclic collector's reach until the block ends: the
    collection `release_memory` runs after each trial then takes a fraction of a millisecond
    instead of about 170 ms (torch, Lightning and scikit-learn loaded), and the collector never
    writes to the pages a forked process shares."""
    import gc

    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def check_timeout(timeout: float | None) -> None:
    """Refuse a budget that cannot be a budget (zero or below), before any work."""
    if timeout is not None and not timeout > 0:
        raise UsageError(f"--timeout {timeout:g}: expected a number of seconds above 0, such as --timeout 120")


def minimum_seconds(data_bytes: int) -> float:
    """The least budget that can read these files and write a submission from one cheap model."""
    return FIXED_SECONDS + 3.0 * data_bytes / READ_BYTES_PER_SECOND


@dataclass
class Budget:
    total: float | None  # seconds for the whole run; None: unbounded
    started: float  # time.monotonic() when the clock started
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds, in order
    final_reserve: float = 0.0  # kept for the blend and the writing of outputs
    outputs_reserve: float = 0.0  # of which for the writing of outputs
    network_reserve: float = 0.0  # kept for the networks
    network_start: float | None = None  # the moment the baselines must have ended
    peaks: dict[str, float] = field(default_factory=dict)  # stage -> the process's peak memory (MiB) when it ended
    pseudo_reserve: float = 0.0  # kept for --pseudo-label's second pass, after the first blend
    blend_estimate: float = 0.0  # the blend's planned seconds
    network_share: float = 0.0  # of the time left after preprocessing, reserved for the networks (the plan's)

    @classmethod
    def start(cls, total: float | None, started: float | None = None) -> Budget:
        check_timeout(total)
        budget = cls(total, time.monotonic() if started is None else started)
        budget.record("startup", budget.elapsed())  # the interpreter and imports, before the run began
        return budget

    @property
    def bounded(self) -> bool:
        return self.total is not None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def end(self) -> float | None:
        """When the run must be done (monotonic)."""
        return None if self.total is None else self.started + self.total

    @property
    def deadline(self) -> float | None:
        """When models must stop, leaving the final reserve for blend and outputs."""
        return None if self.total is None else self.started + self.total - self.final_reserve

    def left(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def plan(self, rows: int, networks: bool, network_share: float, blend: float = 0.0, pseudo_share: float = 0.0,
             network_need: float | None = None) -> None:
        """Fix the reserves once the data is read and preprocessed; `blend`: the blend's estimated seconds;
        `pseudo_share`: of what is left, kept for a second pass with pseudo-labels (and its second blend).

        `network_need`: the seconds a timed probe says the networks need (`search.network_need`). Where that is
        more than `network_share` of what is left but within MAX_NETWORK_SHARE of it, the networks are given
        it: more time is what they need to win there. Where even that share could not hold it (a large table
        on a CPU), the baselines keep theirs: the networks could not use it well, and the boosted trees can."""
        if self.total is None:
            return
        # The submission and report: a few seconds, more for millions of predictions; and the process's exit,
        # which hands back memory that grows with the rows (1,000,000 rows: 2.4 s after the run's last line).
        self.outputs_reserve = 1.0 + 2 * rows / 300_000
        blend = min(blend, BLEND_SHARE * self.total)  # past that, the blend scores its choices on fewer rows
        self.blend_estimate = blend
        self.final_reserve = min(0.15 * self.total, 1.0 + self.outputs_reserve + blend)
        left = self.left() or 0.0
        self.pseudo_reserve = pseudo_share * left
        self.final_reserve += self.pseudo_reserve + (blend if pseudo_share else 0.0)  # the pass, then a second blend
        left = self.left() or 0.0
        self.network_share = network_share
        if networks and network_need is not None and network_share * left < network_need <= MAX_NETWORK_SHARE * left:
            self.network_share = network_need / left
        self.network_reserve = self.network_share * left if networks else 0.0
        self.network_start = time.monotonic() + left - self.network_reserve

    def blend_allowance(self) -> float | None:
        """Seconds the blend may take: what is left but the outputs' reserve (and the pseudo-labels' pass
        and its blend, while they are to come)."""
        if self.end is None:
            return None
        pending = self.pseudo_reserve + self.blend_estimate if self.pseudo_reserve else 0.0
        return max(0.0, self.end - time.monotonic() - self.outputs_reserve - pending)

    def pseudo_allowance(self) -> float | None:
        """Seconds --pseudo-label's second pass may take: what is left but a second blend and the outputs."""
        if self.end is None:
            return None
        self.pseudo_reserve = 0.0  # from now on the blend may use what the pass leaves
        return max(0.0, self.end - time.monotonic() - self.outputs_reserve - self.blend_estimate)

    def networks_deadline(self) -> float | None:
        """When the network stage must end: a small margin before the deadline for its wrap-up
        (the last validation and test predictions after the clock stops a fit)."""
        return None if self.deadline is None else self.deadline - (0.5 + 0.02 * self.total)

    def baselines_left(self) -> float | None:
        """Seconds the baselines may still use."""
        if self.total is None:
            return None
        end = self.network_start if self.network_start is not None else self.deadline
        return max(0.0, end - time.monotonic())

    def record(self, stage: str, seconds: float) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds

    @contextmanager
    def stage(self, name: str):
        start = time.monotonic()
        try:
            yield
        finally:
            self.peaks[name] = peak_mib()
            release_memory()  # a collection takes up to 0.2 s with torch loaded: the stage's, not "other"
            self.record(name, time.monotonic() - start)

    def breakdown(self) -> str:
        """'read 1.2s, baselines 40.3s, ...' and the total against the budget."""
        parts = [f"{name} {seconds:.1f}s" for name, seconds in self.stages.items()]
        other = self.elapsed() - sum(self.stages.values())
        parts.append(f"other {max(other, 0.0):.1f}s")
        total = f"{self.elapsed():.1f}s" + (f" of --timeout {self.total:g}s" if self.total is not None else "")
        return f"{total}: " + ", ".join(parts)

    def as_dict(self) -> dict:
        return {"timeout": self.total, "elapsed": round(self.elapsed(), 2),
                "stages": {k: round(v, 2) for k, v in self.stages.items()},
                "peak_mib": {k: round(v) for k, v in self.peaks.items()}}
