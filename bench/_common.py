"""What every benchmark shares: thread setup, interleaved timing, medians and the figure records.

The machine is shared and noisy (2 cores, other processes running), so a benchmark never times
one variant after the other: it runs the variants in alternating order, round after round, and
compares medians of per-step (or per-round) times taken in the same run.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FASHION = os.environ.get("XSPEC_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")


@dataclass
class Figure:
    """One row of the summary table. `goal` is (op, threshold) with op one of <=, <, >=, >, ==,
    or "within" (a ratio between 1/threshold and threshold)."""

    bench: str
    figure: str
    value: float | bool | str | None
    unit: str = ""
    goal: tuple[str, float | bool] | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.goal is None or self.value is None or isinstance(self.value, str):
            return None
        op, bar = self.goal
        if op == "within":
            return 1 / bar <= self.value <= bar
        return {"<=": self.value <= bar, "<": self.value < bar, ">=": self.value >= bar,
                ">": self.value > bar, "==": self.value == bar}[op]

    def goal_text(self) -> str:
        if self.goal is None:
            return "-"
        op, bar = self.goal
        return f"{op} {bar}{self.unit if not isinstance(bar, bool) else ''}"

    def value_text(self) -> str:
        if self.value is None:
            return "n/a"
        if isinstance(self.value, (bool, str)):
            return str(self.value)
        digits = 3 if abs(self.value) < 10 else 1
        return f"{self.value:.{digits}f}{self.unit}"


class Figures:
    def __init__(self, bench: str):
        self.bench, self.rows = bench, []

    def add(self, figure: str, value, unit: str = "", goal=None, note: str = "") -> Figure:
        row = Figure(self.bench, figure, value, unit, goal, note)
        self.rows.append(row)
        met = {True: "met", False: "MISSED", None: ""}[row.met]
        print(f"  {figure}: {row.value_text()}  (goal {row.goal_text()}) {met} {note}".rstrip(),
              flush=True)
        return row

    def dump(self, path: str | None) -> None:
        if path:
            records = [{**asdict(r), "met": r.met} for r in self.rows]
            Path(path).write_text(json.dumps(records, indent=1))


def load_figures(path: str | Path) -> list[Figure]:
    rows = []
    for record in json.loads(Path(path).read_text()):
        record.pop("met", None)
        goal = record.get("goal")
        record["goal"] = tuple(goal) if goal else None
        rows.append(Figure(**record))
    return rows


def table(rows: list[Figure]) -> str:
    header = ("bench", "figure", "value", "goal", "met?")
    lines = [(r.bench, r.figure, r.value_text(), r.goal_text(),
              {True: "yes", False: "NO", None: "-"}[r.met]) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = " | ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), "-+-".join("-" * w for w in widths)]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)


def set_threads(threads: int) -> int:
    import torch

    torch.set_num_threads(threads)
    return torch.get_num_threads()


def interleave(variants: dict[str, Callable[[], list[float]]], rounds: int,
               log: bool = True) -> dict[str, list[list[float]]]:
    """Run each variant once per round, alternating the order (AB, BA, AB, ...).

    Each call returns a list of samples (per-step times, say); the result keeps them per round,
    so that a ratio can pair the variants of one round (see `paired_ratio`).
    """
    names = list(variants)
    samples: dict[str, list[list[float]]] = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            got = variants[name]()
            samples[name].append(got)
            if log:
                print(f"    round {r + 1}/{rounds} {name}: median {median(got) * 1e3:.1f} ms "
                      f"over {len(got)} samples ({time.perf_counter() - start:.1f} s)",
                      file=sys.stderr, flush=True)
    return samples


def pooled(per_round: list[list[float]]) -> float:
    """Median of all samples of all rounds."""
    return median([x for samples in per_round for x in samples])


def paired_ratio(a: list[list[float]], b: list[list[float]]) -> float:
    """Median over rounds of median(a) / median(b) within the round: the load of the machine
    changes over minutes, so each round's ratio compares variants timed side by side."""
    return median([median(x) / median(y) for x, y in zip(a, b)])


class Baton:
    """Runs training loops in threads, one step at a time, in turn (A, B, A, B, ...), so that the
    loops compared meet the same machine load step for step.

    Each loop calls `step(name)` before it fetches a batch and `finish(name)` when it is done;
    the time from getting the baton to the next call is that step's time. Step k of A and step k
    of B ran next to each other in time: `paired(a, b)` is the median of their ratios.
    """

    def __init__(self, names: list[str]):
        self.order, self.active, self.current = list(names), list(names), names[0]
        self.cond = threading.Condition()
        self.times: dict[str, list[float]] = {n: [] for n in names}
        self.waits: dict[str, list[float]] = {n: [] for n in names}
        self.started: dict[str, float] = {}

    def step(self, name: str) -> None:
        with self.cond:
            self._close(name)
            waiting = time.perf_counter()
            self.cond.wait_for(lambda: self.current == name)
            self.started[name] = time.perf_counter()
            self.waits[name].append(self.started[name] - waiting)

    def finish(self, name: str) -> None:
        with self.cond:
            self._close(name)
            if name in self.active:
                self.active.remove(name)
                self._advance(name)

    def _close(self, name: str) -> None:
        if name in self.started:
            self.times[name].append(time.perf_counter() - self.started.pop(name))
            self._advance(name)

    def _advance(self, name: str) -> None:
        i = self.order.index(name)
        following = [self.order[(i + k) % len(self.order)] for k in range(1, len(self.order) + 1)]
        self.current = next((n for n in following if n in self.active), None)
        self.cond.notify_all()

    def run(self, loops: dict[str, Callable[[], None]]) -> None:
        """Run each loop in its own thread; re-raise the first failure."""
        errors = []

        def guarded(name, fn):
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                errors.append(exc)
            finally:
                self.finish(name)

        threads = [threading.Thread(target=guarded, args=(n, fn), daemon=True)
                   for n, fn in loops.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def paired(self, a: str, b: str, skip: int = 3) -> float:
        """Median over steps of time(a) / time(b), warm-up and last step left out."""
        n = min(len(self.times[a]), len(self.times[b])) - 1
        return median([x / y for x, y in zip(self.times[a][skip:n], self.times[b][skip:n])])


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def step_times(marks: list[float], skip: int) -> list[float]:
    """Per-step durations from consecutive time marks, without the first `skip` (warm-up)."""
    return [b - a for a, b in zip(marks, marks[1:])][skip:]


def cli(description: str, **extra):
    """The argparse parser every bench script starts from (--json for run_all.py)."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", help="also write the figures as JSON to this file")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                        help="torch threads for every variant (default: 2)")
    for flag, kwargs in extra.items():
        parser.add_argument(f"--{flag.replace('_', '-')}", **kwargs)
    return parser
