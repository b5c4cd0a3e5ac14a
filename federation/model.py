"""The trajectory model: a small read-sequence network that Opacus can train per sample cheaply.

Architecture (``TrajectoryModel``), for a batch of B vehicles with L reads of F features and S
summary features:

0. Inputs are standardised by fixed reference constants (``federation.features.scaling``;
   derived from public synthetic data, never from a force's) and the output bias starts at
   the log-odds of ``prior_prevalence`` -- both part of the model's definition, not weights.
1. ``read_embed``: Linear(F, H) + ReLU, applied to every read.
2. ``conv_blocks.{i}``: ``n_conv_layers`` residual blocks of a temporal convolution (kernel
   ``kernel_size``, same padding) + ReLU over the read axis; padded positions are zeroed after
   each block, so a vehicle's output never depends on the padding. The convolution is written
   as a Linear(H * kernel_size, H) over each read's window of neighbouring reads
   (``TemporalConv``), which is mathematically a Conv1d but lets Opacus compute per-sample
   gradients with one batched matrix product instead of an ``im2col`` unfold (measured faster
   under DP-SGD than ``nn.Conv1d``; see ``docs/benchmarks/dp-step.md``).
3. Pooling over reads: masked attention pooling (``attn_score``: Linear(H, 1), masked
   softmax) concatenated with a masked mean, giving 2H per vehicle.
4. ``head``: Linear(2H + S, H) + ReLU + Linear(H, 1) -> one logit per vehicle.

Why this and not a recurrent net: per-sample gradients (DP-SGD) for Linear layers are one
batched matrix product each, while Opacus's DPGRU unrolls the recurrence in Python (its DP
step measured about 5x a plain GRU's step, and about 6x this model's DP step).
``benchmarks/bench_dp_step.py`` measures the DP step against the non-private step of this
model (about 1.3-1.6x with ``hooks``; ``docs/benchmarks/dp-step.md``).

What leaves a force is exactly ``get_weights(model)``: the float32 parameter arrays listed by
``weight_spec(config)``, in that order. Their shapes depend only on ``ModelConfig``; the
number of cameras, vehicles and reads never enters a shape (the sequence length only sets
how many positions the convolution slides over). There are no buffers.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from federation.features.scaling import read_scaling, summary_scaling
from federation.features.schema import READ_FEATURES, SUMMARY_FEATURES, ExampleSet


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters that fix every weight shape of ``TrajectoryModel``."""

    n_read_features: int = len(READ_FEATURES)
    n_summary_features: int = len(SUMMARY_FEATURES)
    hidden: int = 32
    kernel_size: int = 5
    n_conv_layers: int = 2
    use_summary: bool = True
    standardise: bool = True
    prior_prevalence: float = 0.01

    def __post_init__(self) -> None:
        if self.kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (same padding); got {self.kernel_size}")
        for name in ("n_read_features", "hidden", "kernel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.n_conv_layers < 0 or self.n_summary_features < 0:
            raise ValueError("n_conv_layers and n_summary_features must be non-negative")
        if not 0.0 < self.prior_prevalence < 1.0:
            raise ValueError(f"prior_prevalence must be in (0, 1); got {self.prior_prevalence}")
        if self.standardise and (
            self.n_read_features != len(READ_FEATURES)
            or self.n_summary_features != len(SUMMARY_FEATURES)
        ):
            raise ValueError(
                "standardise=True uses the reference scaling of READ_FEATURES and "
                "SUMMARY_FEATURES; feature counts must match them"
            )

    def to_dict(self) -> dict:
        """Plain dict (for study specs and checkpoints)."""
        return asdict(self)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class _Scaling:
    """Fixed standardisation by reference constants (``federation.features.scaling``).

    Plain tensors, not parameters or buffers: they are part of the model's definition and
    never leave a force or change in training.
    """

    def __init__(self, read: tuple[np.ndarray, np.ndarray], summary: tuple[np.ndarray, np.ndarray]):
        self.read_centre, self.read_scale = (torch.from_numpy(a) for a in read)
        self.summary_centre, self.summary_scale = (torch.from_numpy(a) for a in summary)

    @classmethod
    def reference(cls) -> _Scaling:
        return cls(read_scaling(), summary_scaling())

    def __call__(self, sequences: torch.Tensor, summary: torch.Tensor):
        return (
            (sequences - self.read_centre) / self.read_scale,
            (summary - self.summary_centre) / self.summary_scale,
        )


class TemporalConv(nn.Module):
    """A 1-D convolution over the read axis of ``[B, L, H]`` input, as a Linear over windows.

    Output position t is ``window(concat(h[t - p], ..., h[t + p]))`` with zero padding at both
    ends (p = kernel_size // 2); the weight has shape ``[H_out, kernel_size * H_in]``.
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.window = nn.Linear(channels * kernel_size, channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``[B, L, H] -> [B, L, H]``."""
        pad = self.kernel_size // 2
        length = h.shape[1]
        padded = nn.functional.pad(h, (0, 0, pad, pad))
        windows = torch.cat([padded[:, k : k + length] for k in range(self.kernel_size)], dim=-1)
        return self.window(windows)


class TrajectoryModel(nn.Module):
    """Per-read embedding, residual temporal convolutions, attention + mean pooling, MLP head."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        self.read_embed = nn.Linear(c.n_read_features, c.hidden)
        self.conv_blocks = nn.ModuleList(
            TemporalConv(c.hidden, c.kernel_size) for _ in range(c.n_conv_layers)
        )
        self.attn_score = nn.Linear(c.hidden, 1)
        n_summary = c.n_summary_features if c.use_summary else 0
        self.head_hidden = nn.Linear(2 * c.hidden + n_summary, c.hidden)
        self.head_out = nn.Linear(c.hidden, 1)
        with torch.no_grad():  # start at the prior log-odds instead of 50:50
            self.head_out.bias.fill_(_logit(c.prior_prevalence))
        self._scaling = _Scaling.reference() if c.standardise else None

    def forward(
        self, sequences: torch.Tensor, mask: torch.Tensor, summary: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``[B]`` from ``sequences [B, L, F]``, ``mask [B, L]`` and ``summary [B, S]``."""
        if self._scaling is not None:
            sequences, summary = self._scaling(sequences, summary)
        keep = mask.to(sequences.dtype).unsqueeze(-1)  # [B, L, 1]
        h = torch.relu(self.read_embed(sequences)) * keep  # [B, L, H]
        for conv in self.conv_blocks:
            h = (h + torch.relu(conv(h))) * keep
        score = self.attn_score(h).squeeze(-1).masked_fill(~mask, -1e9)
        weights = torch.softmax(score, dim=1).unsqueeze(-1) * keep
        attn_pool = (weights * h).sum(dim=1)
        n_valid = keep.sum(dim=1).clamp(min=1.0)
        mean_pool = h.sum(dim=1) / n_valid
        parts = [attn_pool, mean_pool]
        if self.config.use_summary:
            parts.append(summary)
        z = torch.relu(self.head_hidden(torch.cat(parts, dim=1)))
        return self.head_out(z).squeeze(-1)


class SummaryLogistic(nn.Module):
    """Logistic regression on the summary features, with ``TrajectoryModel``'s call signature.

    Used to train the reference baseline under the same DP-SGD machinery as the learned model.
    """

    def __init__(self, prior_prevalence: float = 0.01) -> None:
        super().__init__()
        self.linear = nn.Linear(len(SUMMARY_FEATURES), 1)
        with torch.no_grad():
            self.linear.bias.fill_(_logit(prior_prevalence))
        self._centre, self._scale = (torch.from_numpy(a) for a in summary_scaling())

    def forward(
        self, sequences: torch.Tensor, mask: torch.Tensor, summary: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``[B]`` from reference-standardised summary features; reads are ignored."""
        return self.linear((summary - self._centre) / self._scale).squeeze(-1)


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside an Opacus ``GradSampleModule`` (or the model itself)."""
    return getattr(model, "_module", model)


def weight_spec(config: ModelConfig) -> list[tuple[str, tuple[int, ...], str]]:
    """The agreed ``(name, shape, dtype)`` of every array that leaves a force, in order."""
    model = TrajectoryModel(config)
    return [(name, tuple(p.shape), "float32") for name, p in model.named_parameters()]


def get_weights(model: nn.Module) -> list[np.ndarray]:
    """The model's parameters as float32 numpy arrays in ``weight_spec`` order (copies)."""
    inner = _unwrap(model)
    if list(inner.buffers()):
        raise ValueError("model has buffers; only parameters may leave a force")
    return [p.detach().cpu().numpy().astype(np.float32, copy=True) for p in inner.parameters()]


def set_weights(model: nn.Module, arrays: list[np.ndarray]) -> None:
    """Load arrays (in ``weight_spec`` order) into the model, checking count, shape and dtype."""
    params = list(_unwrap(model).named_parameters())
    if len(arrays) != len(params):
        raise ValueError(f"expected {len(params)} arrays, got {len(arrays)}")
    with torch.no_grad():
        for (name, p), a in zip(params, arrays, strict=True):
            a = np.asarray(a)
            if tuple(a.shape) != tuple(p.shape):
                raise ValueError(f"array for {name}: shape {a.shape}, expected {tuple(p.shape)}")
            if a.dtype != np.float32:
                raise ValueError(f"array for {name}: dtype {a.dtype}, expected float32")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"array for {name}: contains NaN or infinity")
            p.copy_(torch.from_numpy(a))


def example_tensors(examples: ExampleSet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(sequences, mask, summary)`` as tensors sharing memory with the example arrays."""
    return (
        torch.from_numpy(np.ascontiguousarray(examples.sequences, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(examples.mask, dtype=bool)),
        torch.from_numpy(np.ascontiguousarray(examples.summary, dtype=np.float32)),
    )


@torch.no_grad()
def predict_scores(model: nn.Module, examples: ExampleSet, batch_size: int = 1024) -> np.ndarray:
    """Probability scores ``float64 [N]`` for every example (model in eval mode)."""
    seqs, mask, summary = example_tensors(examples)
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(examples), batch_size):
        logits = model(
            seqs[i : i + batch_size], mask[i : i + batch_size], summary[i : i + batch_size]
        )
        out.append(torch.sigmoid(logits).double().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


ENCODER_PREFIXES = ("read_embed.", "conv_blocks.", "attn_score.")
"""Parameters of the read encoder (per-read embedding, convolutions, attention pooling)."""


def weights_npz_bytes(model: nn.Module) -> bytes:
    """The model's arrays by ``weight_spec`` name as ``.npz`` bytes (public models only).

    Callers write them with ``safefiles.atomic_write_bytes``.
    """
    names = [name for name, _ in _unwrap(model).named_parameters()]
    buffer = io.BytesIO()
    np.savez(buffer, **dict(zip(names, get_weights(model), strict=True)))
    return buffer.getvalue()


def load_initial_weights(
    config: ModelConfig, path: Any, *, seed: int, encoder_only: bool = False
) -> list[np.ndarray]:
    """Starting arrays from a public ``.npz`` (by ``weight_spec`` name), checked against ``config``.

    With ``encoder_only`` only the read encoder (``ENCODER_PREFIXES``) comes from the file and
    the head keeps the seeded initialisation, so what the head learns comes from the forces.
    Raises ``ValueError`` naming the array when a name, shape or dtype does not match.
    """
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = TrajectoryModel(config)
    finally:
        torch.random.set_rng_state(state)
    arrays = dict(np.load(path, allow_pickle=False))
    out = []
    for (name, shape, _), current in zip(weight_spec(config), get_weights(model), strict=True):
        if encoder_only and not name.startswith(ENCODER_PREFIXES):
            out.append(current)
            continue
        if name not in arrays:
            raise ValueError(f"{path}: no array {name!r} for this model configuration")
        a = arrays[name]
        if tuple(a.shape) != shape or a.dtype != np.float32:
            raise ValueError(
                f"{path}: array {name!r} is {a.dtype}{a.shape}, expected float32{shape}"
            )
        out.append(a.copy())
    return out
