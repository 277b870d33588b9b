"""Exact-engine throughput: prefix tree vs flat enumeration in ``rftgrad.theory.exact``.

Throughput is ``outputs × inputs × replicas / second`` with ``outputs = V^L``, measured
over a ladder of output spaces from ``V^L = 10`` up to ``V^L = 4^9 = 262144``, for
``method="tree"`` (logits once per distinct prefix: ``Σ_{l<L} V^l`` logit vectors per
input) and ``method="flat"`` (teacher forcing on every output: ``L·V^L`` logit
vectors), per policy. The main table uses ``per_input=False`` (one VJP for the mean
gradient); a smaller one uses ``per_input=True`` (vmapped per-input VJPs).

Each configuration gets one untimed warm-up run, then the median of up to ``--repeats``
timed runs (fewer when one run is slow, see ``--repeat-budget``). A configuration whose
single run is estimated, from the previous size of the same policy and method scaled by
the number of logit vectors, to take more than ``--max-seconds``, or to grow memory past
``--memory-fraction`` of what is available, is recorded as skipped (as are the larger sizes).
Peak memory is the CUDA allocator's peak on a GPU, or the process's peak resident set
(``VmHWM``, reset before each configuration) on the CPU.

Run ``python benchmarks/exact_engine.py --help`` for the options; results go to a CSV plus
a sidecar JSON with the machine, versions and arguments.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from rftgrad.envs import SequenceEnv, random_sequence_env
from rftgrad.errors import DeviceError
from rftgrad.models import LinearSoftmaxPolicy, SoftmaxPolicy, TabularPolicy, TinyTransformerPolicy
from rftgrad.runtime import environment_info, resolve_device
from rftgrad.theory import METHODS, ExactResult, exact, mean_gradient

#: (V, L) output spaces, in increasing V^L.
LADDER: tuple[tuple[int, int], ...] = (
    (10, 1), (4, 3), (10, 2), (10, 3), (4, 5), (10, 4), (4, 7), (10, 5), (4, 9),
)
QUICK_MAX_OUTPUTS = 1_000
PROMPT_LENGTH, PROMPT_VOCAB = 3, 8

PolicyBuilder = Callable[..., SoftmaxPolicy]
POLICIES: dict[str, PolicyBuilder] = {
    "tabular": TabularPolicy.for_env,
    "linear": lambda env, **kwargs: LinearSoftmaxPolicy.for_env(env, features="input_last_token", **kwargs),
    "transformer": lambda env, **kwargs: TinyTransformerPolicy.for_env(env, d_model=32, **kwargs),
}
DEFAULT_POLICIES = ("tabular", "linear", "transformer")
RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    """One measured (or skipped) configuration; a row of the CSV."""

    policy: str
    method: str
    per_input: bool
    V: int
    L: int
    outputs: int
    inputs: int
    replicas: int
    logit_vectors: int  # over all inputs and replicas
    parameters: int  # per replica
    status: str = "ok"  # ok | skipped | error
    repeats: int = 0
    warmup_s: float = math.nan
    median_s: float = math.nan
    min_s: float = math.nan
    throughput: float = math.nan  # outputs · inputs · replicas / median_s
    throughput_best: float = math.nan  # the same over min_s
    peak_mem_mib: float = math.nan
    diff_vs_tree: float = math.nan  # max relative deviation of flat's numbers from tree's
    cpu_stall: float = math.nan  # share of the time some task waited for a CPU (Linux PSI; noisy below ~50 ms)
    note: str = ""


def logit_vectors_per_input(method: str, vocab: int, length: int) -> int:
    """Logit vectors one replica evaluates per input: ``Σ_{l<L} V^l`` (tree) or ``L·V^L`` (flat)."""
    if method == "tree":
        return sum(vocab**level for level in range(length))
    return length * vocab**length


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak, else the process's peak RSS.

    On Linux the RSS peak (``VmHWM``) is reset through ``/proc/self/clear_refs`` after
    ``malloc_trim`` hands freed heap back to the system (so the peak is not an earlier
    configuration's leftover); where that fails the lifetime peak (``ru_maxrss``) is
    reported instead. The RSS includes the interpreter and torch (about 300 MiB).
    ``growth_mib`` (peak minus the level at ``reset``) drives the out-of-memory guard.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.base_mib = 0.0
        if device.type == "cuda":
            self.metric = "torch.cuda.max_memory_allocated (per configuration)"
        elif self._reset_rss() and self._status_kib("VmHWM") is not None:
            self.metric = "process peak RSS, VmHWM reset per configuration"
        else:
            self.metric = "process peak RSS over the whole run (ru_maxrss)"

    @staticmethod
    def _reset_rss() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    @staticmethod
    def _status_kib(field: str, path: str = "/proc/self/status") -> int | None:
        """A ``Field: N kB`` line of a /proc file (``VmHWM``, ``VmRSS``, ``MemAvailable``)."""
        try:
            text = Path(path).read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        return None

    def current_mib(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device) / 2**20
        kib = self._status_kib("VmRSS")
        return math.nan if kib is None else kib / 1024

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            libc = ctypes.util.find_library("c")
            if libc is not None and sys.platform.startswith("linux"):
                ctypes.CDLL(libc).malloc_trim(0)
            self._reset_rss()
        self.base_mib = self.current_mib()

    def peak_mib(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        kib = self._status_kib("VmHWM")
        if kib is None:  # ru_maxrss: KiB on Linux, bytes on macOS
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            kib = peak // 1024 if sys.platform == "darwin" else peak
        return kib / 1024

    def growth_mib(self) -> float:
        return self.peak_mib() - self.base_mib

    def available_mib(self) -> float:
        """Memory a new allocation can still get: free CUDA memory, or ``MemAvailable``."""
        if self.device.type == "cuda":
            return torch.cuda.mem_get_info(self.device)[0] / 2**20
        kib = self._status_kib("MemAvailable", "/proc/meminfo")
        if kib is None:
            try:
                return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
            except (ValueError, OSError):
                return math.inf
        return kib / 1024


class CpuStall:
    """Share of wall time in which some runnable task waited for a CPU (Linux PSI; NaN elsewhere).

    Read from ``/proc/pressure/cpu`` ("some", in microseconds). Near 0 when this process
    has the cores to itself; well above 0 when other work competes for them, which slows
    the timed runs. A contention flag, not a correction.
    """

    PSI = Path("/proc/pressure/cpu")

    def __init__(self) -> None:
        self.start: tuple[float, int] | None = None

    @classmethod
    def _read(cls) -> tuple[float, int] | None:
        try:
            some = cls.PSI.read_text().splitlines()[0].split()
        except (OSError, IndexError):
            return None
        totals = [int(field.split("=", 1)[1]) for field in some if field.startswith("total=")]
        return (time.perf_counter(), totals[0]) if totals else None

    def begin(self) -> None:
        self.start = self._read()

    def fraction(self) -> float:
        end = self._read()
        if self.start is None or end is None:
            return math.nan
        wall, stalled_us = end[0] - self.start[0], end[1] - self.start[1]
        return stalled_us / 1e6 / wall if wall > 0 else math.nan


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], ExactResult], device: torch.device) -> tuple[float, ExactResult]:
    """Wall-clock seconds of ``fn()`` (device work included) and its result."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def relative_deviation(result: ExactResult, reference: ExactResult) -> float:
    """Max over value, std, mean-gradient norm (and per-input norms) of ``|a - b| / max|b|``."""
    pairs = [(result.value, reference.value), (result.std, reference.std),
             (result.mean_grad_norm, reference.mean_grad_norm)]
    if isinstance(result, ExactResult) and isinstance(reference, ExactResult):
        pairs.append((result.grad_norm, reference.grad_norm))
    return max(
        float((a - b).abs().max() / b.abs().max().clamp_min(torch.finfo(b.dtype).tiny)) for a, b in pairs
    )


class Bench:
    """Runs the ladder for the chosen policies, methods and ``per_input`` settings."""

    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        self.args = args
        self.device = device
        self.memory = PeakMemory(device)
        self.stall = CpuStall()
        self.rows: list[Row] = []

    def sizes(self, per_input: bool) -> list[tuple[int, int]]:
        limit = self.args.per_input_max_outputs if per_input else self.args.max_outputs
        limit = min(limit, QUICK_MAX_OUTPUTS) if self.args.quick else limit
        return [(vocab, length) for vocab, length in LADDER if vocab**length <= limit]

    def env(self, vocab: int, length: int) -> SequenceEnv:
        env = random_sequence_env(
            num_prompts=self.args.inputs, vocab_size=vocab, length=length, prompt_length=PROMPT_LENGTH,
            prompt_vocab_size=PROMPT_VOCAB, reward="position_match", seed=0,
        )
        env.reward_table(vocab**length)  # cached by the env: reward evaluation is not timed
        return env

    def run(self, on_row: Callable[[Row], None]) -> list[Row]:
        for per_input in (False, True):
            for name in self.args.policies:
                last: dict[str, tuple[int, float, float]] = {}  # method -> (logit vectors, s, MiB) of the last run
                stopped: dict[str, str] = {}  # method -> why larger sizes are not run
                for vocab, length in self.sizes(per_input):
                    env = self.env(vocab, length)
                    policy = POLICIES[name](
                        env, num_replicas=self.args.replicas, device=str(self.device), dtype=self.args.dtype, seed=0
                    )
                    reference: ExactResult | None = None
                    for method in self.args.methods:
                        row, result = self.measure(policy, env, name, method, per_input, last, stopped)
                        if result is not None and method == "tree":
                            reference = result
                        elif result is not None and reference is not None:
                            row.diff_vs_tree = relative_deviation(result, reference)
                        del result
                        self.rows.append(row)
                        on_row(row)
                    del reference, policy, env
                    self.release()
        return self.rows

    def release(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def measure(
        self, policy: SoftmaxPolicy, env: SequenceEnv, name: str, method: str, per_input: bool,
        last: dict[str, tuple[int, float, float]], stopped: dict[str, str],
    ) -> tuple[Row, ExactResult | None]:
        """Warm up, time, and fill one row; ``last`` and ``stopped`` carry the skip rule across sizes."""
        space = env.output_space
        scale = env.num_inputs * policy.num_replicas
        row = Row(
            policy=name, method=method, per_input=per_input, V=space.vocab_size, L=space.length,
            outputs=space.num_outputs, inputs=env.num_inputs, replicas=policy.num_replicas,
            logit_vectors=scale * logit_vectors_per_input(method, space.vocab_size, space.length),
            parameters=policy.num_parameters,
        )
        if method in stopped:
            row.status, row.note = "skipped", stopped[method]
            return row, None
        if method in last:
            work, seconds, growth_mib = last[method]
            ratio = row.logit_vectors / work
            memory_mib = growth_mib * ratio
            memory_cap = self.args.memory_fraction * self.memory.available_mib()
            reasons = []
            if seconds * ratio > self.args.max_seconds:
                reasons.append(f"{seconds * ratio:.0f} s > --max-seconds {self.args.max_seconds:g}")
            if memory_mib > memory_cap:
                reasons.append(f"{memory_mib / 1024:.1f} GiB > {memory_cap / 1024:.1f} GiB (--memory-fraction)")
            if reasons:
                row.note = "estimated " + " and ".join(reasons)
                row.status = "skipped"
                stopped[method] = f"a smaller V^L was already {row.note}"
                return row, None

        def call() -> ExactResult:
            return (exact if per_input else mean_gradient)(policy, env, method=method, max_outputs=space.num_outputs)

        self.memory.reset()
        self.stall.begin()
        try:
            row.warmup_s, result = timed(call, self.device)
            row.repeats = max(1, min(self.args.repeats, int(self.args.repeat_budget // row.warmup_s)))
            times = []
            for _ in range(row.repeats):
                del result
                seconds, result = timed(call, self.device)
                times.append(seconds)
        except (RuntimeError, MemoryError) as err:  # CUDA OOM is a RuntimeError
            row.status, row.note = "error", f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            stopped[method] = f"a smaller V^L failed ({type(err).__name__})"
            self.release()
            return row, None
        row.cpu_stall = self.stall.fraction()  # over the warm-up and the timed runs
        row.median_s, row.min_s = statistics.median(times), min(times)
        row.throughput = row.outputs * scale / row.median_s
        row.throughput_best = row.outputs * scale / row.min_s
        row.peak_mem_mib = self.memory.peak_mib()
        last[method] = (row.logit_vectors, row.median_s, self.memory.growth_mib())
        return row, result


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (other processes compete for the cores), if known."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def summary(frame: pd.DataFrame, per_input: bool) -> pd.DataFrame:
    """Tree vs flat side by side, one line per (policy, V, L): throughput, speed-up, time, memory,
    and the larger of the two CPU-stall shares (contention flag)."""
    part = frame[frame["per_input"] == per_input]
    lines = []
    for (policy, vocab, length), group in part.groupby(["policy", "V", "L"], sort=False):
        by_method = {r["method"]: r for _, r in group.iterrows()}
        line: dict[str, Any] = {"policy": policy, "V": vocab, "L": length, "V^L": vocab**length}
        for method in METHODS:
            r = by_method.get(method)
            ok = r is not None and r["status"] == "ok"
            line[f"{method} out/s"] = f"{r['throughput']:.3g}" if ok else ("-" if r is None else r["status"])
            line[f"{method} s"] = f"{r['median_s']:.3g}" if ok else "-"
            line[f"{method} MiB"] = f"{r['peak_mem_mib']:.0f}" if ok else "-"
        tree, flat = by_method.get("tree"), by_method.get("flat")
        both = tree is not None and flat is not None and tree["status"] == flat["status"] == "ok"
        line["tree/flat"] = f"{tree['throughput'] / flat['throughput']:.2f}" if both else "-"
        stalls = group.loc[group["status"] == "ok", "cpu_stall"].dropna()
        line["cpu stall"] = f"{stalls.max():.0%}" if len(stalls) else "-"
        lines.append(line)
    return pd.DataFrame(lines)


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub markdown table (no ``tabulate`` dependency)."""
    cells = [list(map(str, frame.columns))] + [[str(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("---" for _ in frame.columns) + "|")
    return "\n".join(lines)


def report(frame: pd.DataFrame, as_markdown: bool) -> str:
    blocks = []
    for per_input in (False, True):
        table = summary(frame, per_input)
        if table.empty:
            continue
        title = f"per_input={per_input} ({'per-input VJPs' if per_input else 'mean gradient, one VJP'})"
        body = markdown(table) if as_markdown else table.to_string(index=False)
        blocks.append(f"{title}\n\n{body}")
    return "\n\n".join(blocks)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto (default: cpu)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--inputs", type=int, default=4, help="N, inputs (prompts) per environment (default: 4)")
    parser.add_argument("--replicas", type=int, default=2, help="R, policy replicas (default: 2)")
    parser.add_argument("--policies", nargs="+", default=list(DEFAULT_POLICIES), choices=sorted(POLICIES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--quick", action="store_true", help=f"only V^L <= {QUICK_MAX_OUTPUTS} (smoke run)")
    parser.add_argument("--max-outputs", type=int, default=max(v**length for v, length in LADDER),
                        help="largest V^L of the per_input=False ladder (default: 262144)")
    parser.add_argument("--per-input-max-outputs", type=int, default=10_000,
                        help="largest V^L of the per_input=True ladder (default: 10000)")
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="skip a configuration whose single run is estimated to exceed this (default: 60)")
    parser.add_argument("--memory-fraction", type=float, default=0.6,
                        help="skip a configuration whose memory growth, estimated from the previous size, "
                             "exceeds this share of the available host RAM or free GPU memory (default: 0.6)")
    parser.add_argument("--repeats", type=int, default=5, help="most timed runs per configuration (default: 5)")
    parser.add_argument("--repeat-budget", type=float, default=15.0,
                        help="timed runs per configuration are cut to fit about this many seconds (default: 15)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--out", type=Path, default=None,
                        help="CSV file (default: benchmarks/results/exact_engine_<device>.csv); a .json sidecar "
                             "with the machine and arguments is written next to it")
    parser.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    parser.add_argument("--from-csv", type=Path, default=None, help="only print the tables of an existing CSV")
    args = parser.parse_args(argv)
    if args.inputs < 1 or args.replicas < 1 or args.repeats < 1 or args.max_seconds <= 0:
        parser.error("--inputs, --replicas and --repeats must be >= 1 and --max-seconds > 0")
    if not 0 < args.memory_fraction <= 1:
        parser.error("--memory-fraction must lie in (0, 1]")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.from_csv is not None:
        print(report(pd.read_csv(args.from_csv), args.markdown))
        return
    try:
        device = resolve_device(args.device)
    except DeviceError as err:
        raise SystemExit(f"exact_engine.py: error: {err}") from None
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out: Path = args.out or RESULTS_DIR / f"exact_engine_{device.type}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, device)
    meta: dict[str, Any] = {
        "benchmark": "exact_engine",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "args": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "environment": environment_info(device),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "memory_metric": bench.memory.metric,
        "load_average_at_start": load_average(),
        "ladder": [list(size) for size in LADDER],
    }
    sidecar = out.with_suffix(".json")

    def write_meta() -> None:
        sidecar.write_text(json.dumps(meta, indent=2, default=str) + "\n")

    write_meta()  # rewritten with the totals at the end
    print(f"exact-engine benchmark on {device} ({meta['cpu_model']}, {meta['cpu_count']} cores, "
          f"torch {torch.__version__}, {meta['torch_num_threads']} threads), N={args.inputs}, R={args.replicas}, "
          f"{args.dtype}", flush=True)
    start = time.perf_counter()

    def on_row(row: Row) -> None:
        timing = (f"{row.median_s:8.3f} s x{row.repeats}  {row.throughput:10.3g} out/s  cpu stall "
                  f"{row.cpu_stall:.0%}" if row.status == "ok" else "")
        print(f"  {row.policy:<11} {row.method:<4} per_input={row.per_input!s:<5} V={row.V:<2} L={row.L} "
              f"V^L={row.outputs:<7} {row.status:<7} {timing} {row.note}", flush=True)
        pd.DataFrame([asdict(r) for r in bench.rows]).to_csv(out, index=False)  # partial results survive

    rows = bench.run(on_row)
    meta["total_seconds"] = round(time.perf_counter() - start, 1)
    meta["load_average_at_end"] = load_average()
    frame = pd.DataFrame([asdict(r) for r in rows])
    frame.to_csv(out, index=False)
    write_meta()
    print()
    print(report(frame, args.markdown))
    print(f"\ntotal {meta['total_seconds']} s; wrote {out} and {sidecar}")


if __name__ == "__main__":
    main()
