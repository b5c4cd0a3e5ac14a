"""DP-SGD step time against the non-private step of the same model on the same batch.

Times, in one process and interleaved round-robin (so background load hits every variant
alike), one optimiser step (forward, backward, update) of:

* ``TrajectoryModel`` without privacy (plain SGD) -- the baseline of every ratio;
* the same model under Opacus DP-SGD with each per-sample-gradient mode: ``hooks``,
  ``functorch``, ``ew`` (expanded weights) and ``ghost`` (ghost clipping);
* the same model with its temporal convolutions as ``nn.Conv1d`` (what ``TemporalConv``
  replaces), non-private and under DP-SGD;
* for contrast, a GRU model of the same width without privacy and its Opacus ``DPGRU``
  twin under DP-SGD (the architecture the trajectory model was designed to avoid).

The DP steps use a fixed batch (``poisson_sampling=False``) so that every variant sees exactly
the same tensors; Poisson sampling changes which rows are in a batch, not the cost per row.
Writes ``docs/benchmarks/dp-step.md``.

Usage: ``python benchmarks/bench_dp_step.py [--batch 256] [--max-reads 128] [--hidden 32]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from opacus import PrivacyEngine
from opacus.layers import DPGRU
from torch import nn

from federation.features import READ_FEATURES, SUMMARY_FEATURES
from federation.model import ModelConfig, TrajectoryModel

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "dp-step.md"
MODES = ("hooks", "functorch", "ew", "ghost")


class Conv1dBlock(nn.Module):
    """``nn.Conv1d`` on ``[B, L, H]`` input: the layer ``TemporalConv`` replaces."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv(h.transpose(1, 2)).transpose(1, 2)


def conv1d_variant(config: ModelConfig) -> TrajectoryModel:
    """The trajectory model with its temporal convolutions as ``nn.Conv1d`` (contrast only)."""
    model = TrajectoryModel(config)
    model.conv_blocks = nn.ModuleList(
        Conv1dBlock(config.hidden, config.kernel_size) for _ in range(config.n_conv_layers)
    )
    return model


class GRUModel(nn.Module):
    """Per-read embedding + one recurrent layer + linear head (contrast only)."""

    def __init__(self, n_features: int, hidden: int, dp: bool) -> None:
        super().__init__()
        self.embed = nn.Linear(n_features, hidden)
        self.rnn = (DPGRU if dp else nn.GRU)(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, sequences, mask, summary):
        out, _ = self.rnn(torch.relu(self.embed(sequences)))
        keep = mask.to(out.dtype).unsqueeze(-1)
        pooled = (out * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        return self.head(pooled).squeeze(-1)


def _batch(batch: int, max_reads: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_reads + 1, (batch,), generator=g)
    mask = torch.arange(max_reads)[None, :] < lengths[:, None]
    seqs = torch.randn(batch, max_reads, len(READ_FEATURES), generator=g) * mask[..., None]
    summary = torch.rand(batch, len(SUMMARY_FEATURES), generator=g)
    labels = (torch.rand(batch, generator=g) < 0.1).float()
    return seqs, mask, summary, labels


def _plain_step(model: nn.Module, data) -> Callable[[], None]:
    seqs, mask, summary, labels = data
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    crit = nn.BCEWithLogitsLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        crit(model(seqs, mask, summary), labels).backward()
        opt.step()

    return step


def _dp_step(model: nn.Module, data, mode: str) -> Callable[[], None]:
    seqs, mask, summary, labels = data
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    crit = nn.BCEWithLogitsLoss()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(seqs, mask, summary, labels), batch_size=len(labels)
    )
    engine = PrivacyEngine(accountant="rdp", secure_mode=False)
    made = engine.make_private(
        module=model,
        optimizer=opt,
        data_loader=loader,
        criterion=crit,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        poisson_sampling=False,
        grad_sample_mode=mode,
    )
    if mode == "ghost":
        dp_model, dp_opt, dp_crit, _ = made
    else:
        dp_model, dp_opt, _ = made
        dp_crit = crit

    def step() -> None:
        dp_opt.zero_grad(set_to_none=True)
        dp_crit(dp_model(seqs, mask, summary), labels).backward()
        dp_opt.step()

    return step


def run(batch: int, max_reads: int, hidden: int, reps: int, warmup: int) -> dict[str, float]:
    """Median seconds per step for every variant, measured round-robin."""
    torch.manual_seed(0)
    data = _batch(batch, max_reads)
    config = ModelConfig(hidden=hidden)
    reference = TrajectoryModel(config).state_dict()

    def fresh() -> TrajectoryModel:
        m = TrajectoryModel(config)
        m.load_state_dict(reference)
        return m

    steps: dict[str, Callable[[], None]] = {"plain": _plain_step(fresh(), data)}
    for mode in MODES:
        steps[f"dp-{mode}"] = _dp_step(fresh(), data, mode)
    steps["conv1d-plain"] = _plain_step(conv1d_variant(config), data)
    steps["conv1d-dp"] = _dp_step(conv1d_variant(config), data, "hooks")
    steps["gru-plain"] = _plain_step(GRUModel(len(READ_FEATURES), hidden, dp=False), data)
    steps["dpgru-dp"] = _dp_step(GRUModel(len(READ_FEATURES), hidden, dp=True), data, "hooks")

    times: dict[str, list[float]] = {name: [] for name in steps}
    for rep in range(warmup + reps):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if rep >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def render(result: dict[str, float], args: argparse.Namespace) -> str:
    """The markdown report."""
    plain, gru = result["plain"], result["gru-plain"]
    lines = [
        "# DP-SGD step cost",
        "",
        "Produced by `python benchmarks/bench_dp_step.py "
        f"--batch {args.batch} --max-reads {args.max_reads} --hidden {args.hidden} "
        f"--reps {args.reps}`.",
        "",
        f"One optimiser step on a fixed batch of {args.batch} vehicles x {args.max_reads} reads "
        f"({len(READ_FEATURES)} read features, {len(SUMMARY_FEATURES)} summary features), "
        f"hidden width {args.hidden}, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, {platform.machine()}. Median of {args.reps} steps per variant, variants "
        "interleaved round-robin in one process after warm-up, so load from other processes "
        "falls on all of them alike. Load average (1 min) over the run: "
        f"{args.load_before:.1f} before, {args.load_after:.1f} after (2 cores) -- absolute times "
        "depend on that background load; the ratios are the result.",
        "",
        "| variant | median step (ms) | ratio |",
        "| --- | ---: | ---: |",
        f"| TrajectoryModel, non-private | {plain * 1e3:.1f} | 1.00 (baseline) |",
    ]
    for mode in MODES:
        t = result[f"dp-{mode}"]
        lines.append(f"| TrajectoryModel, DP-SGD `{mode}` | {t * 1e3:.1f} | {t / plain:.2f} |")
    conv = result["conv1d-plain"]
    lines += [
        f"| same model with `nn.Conv1d`, non-private | {conv * 1e3:.1f} | "
        f"{conv / plain:.2f} (vs TrajectoryModel) |",
        f"| same model with `nn.Conv1d`, DP-SGD `hooks` | {result['conv1d-dp'] * 1e3:.1f} | "
        f"{result['conv1d-dp'] / conv:.2f} (vs its own non-private step); "
        f"{result['conv1d-dp'] / plain:.2f} (vs TrajectoryModel) |",
        f"| GRU model, non-private | {gru * 1e3:.1f} | 1.00 (GRU baseline) |",
        f"| DPGRU model, DP-SGD `hooks` | {result['dpgru-dp'] * 1e3:.1f} | "
        f"{result['dpgru-dp'] / gru:.2f} (vs GRU) |",
        "",
        "Ratios are DP step time / non-private step time of the same model on the same batch. "
        "The target for the trajectory model is at most about 2x. Training uses "
        "`grad_sample_mode='hooks'` (`client_force/dp_trainer.py`): it is within the target "
        "and is Opacus's most general mode; `ew` (expanded weights) was a little faster here "
        "but supports fewer layers and loss set-ups.",
        "",
        f"Why `TemporalConv` and not `nn.Conv1d`: Opacus computes per-sample Conv1d gradients "
        f"through an `im2col` unfold, which dominated the DP step in profiling; the same "
        f"convolution written as a Linear over each read's window of neighbours costs "
        f"{result['dp-hooks'] * 1e3:.0f} ms per DP step against "
        f"{result['conv1d-dp'] * 1e3:.0f} ms with `nn.Conv1d`. And why no recurrent layer: the "
        f"DPGRU model's DP step took {result['dpgru-dp'] / result['dp-hooks']:.1f}x as long as "
        "the trajectory model's DP step.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--max-reads", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    args.load_before = os.getloadavg()[0]
    result = run(args.batch, args.max_reads, args.hidden, args.reps, args.warmup)
    args.load_after = os.getloadavg()[0]
    report = render(result, args)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)


if __name__ == "__main__":
    main()
