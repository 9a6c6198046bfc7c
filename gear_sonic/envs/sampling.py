"""SONIC's failure-based adaptive motion sampling, per 50-frame bin.

Each clip is cut into bins of `bin_frames` control frames. A bin's failure rate is the number
of episodes that terminated in it over the number of episodes that passed through it. A start
bin is drawn with probability `adaptive_weight x` (failure rate, capped at `failure_rate_cap x`
the mean rate, normalised) `+ (1 - adaptive_weight) x` uniform; the start frame is drawn inside
the bin and then moved back by up to `start_shift_back_frames`.

Counts live over the whole library (not only the resident clips) so they survive resident
subset swaps, checkpoints and cross-process merges. Counts are split into a `base` (identical
in every process after the last merge) and a local `delta`, so merging sums only the deltas.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def library_digest(names: list[str]) -> torch.Tensor:
    """20-byte SHA-1 of the clip names, stored with the counts to catch a different library."""
    return torch.tensor(list(hashlib.sha1("\n".join(names).encode()).digest()), dtype=torch.uint8)


class AdaptiveSampler:
    def __init__(
        self,
        clip_num_frames: np.ndarray,
        clip_names: list[str],
        *,
        bin_frames: int = 50,
        adaptive_weight: float = 0.9,
        failure_rate_cap: float = 200.0,
        start_shift_back_frames: int = 200,
        adaptive: bool = True,
    ):
        self.bin_frames = int(bin_frames)
        self.adaptive_weight = float(adaptive_weight) if adaptive else 0.0
        self.failure_rate_cap = float(failure_rate_cap)
        self.start_shift_back_frames = int(start_shift_back_frames)
        self.clip_num_frames = torch.as_tensor(np.asarray(clip_num_frames), dtype=torch.long)
        self.clip_num_bins = (self.clip_num_frames + self.bin_frames - 1) // self.bin_frames
        self.clip_bin_offset = torch.cumsum(self.clip_num_bins, 0) - self.clip_num_bins
        self.num_bins = int(self.clip_num_bins.sum())
        self.digest = library_digest(clip_names)
        self._base_failures = torch.zeros(self.num_bins, dtype=torch.float64)
        self._base_visits = torch.zeros(self.num_bins, dtype=torch.float64)
        self._delta_failures = torch.zeros(self.num_bins, dtype=torch.float64)
        self._delta_visits = torch.zeros(self.num_bins, dtype=torch.float64)
        self.set_resident(torch.arange(len(self.clip_num_frames)))

    # ----- resident clips --------------------------------------------------------------------
    def set_resident(self, clip_ids: torch.Tensor) -> None:
        """Restrict sampling to these library clips (index i of the result = `clip_ids[i]`)."""
        self.resident = torch.as_tensor(clip_ids, dtype=torch.long)
        bins = self.clip_num_bins[self.resident]
        self._res_bin_owner = torch.repeat_interleave(torch.arange(len(self.resident)), bins)
        first = self.clip_bin_offset[self.resident]
        local_first = torch.cumsum(bins, 0) - bins
        within = torch.arange(int(bins.sum())) - local_first[self._res_bin_owner]
        self._res_bins = first[self._res_bin_owner] + within
        self._res_bin_within = within
        self._probs: torch.Tensor | None = None

    def bin_probabilities(self, bins: torch.Tensor | None = None) -> torch.Tensor:
        """Sampling probability of each bin in `bins` (default: the resident bins), summing to 1."""
        bins = self._res_bins if bins is None else bins
        failures = (self._base_failures + self._delta_failures)[bins]
        visits = (self._base_visits + self._delta_visits)[bins]
        rate = failures / visits.clamp_min(1.0)
        uniform = torch.full_like(rate, 1.0 / max(len(rate), 1))
        if self.adaptive_weight <= 0 or rate.sum() <= 0:
            return uniform
        rate = rate.clamp(max=self.failure_rate_cap * rate.mean())
        return self.adaptive_weight * rate / rate.sum() + (1.0 - self.adaptive_weight) * uniform

    def clip_weights(self) -> torch.Tensor:
        """Per library clip: summed bin probabilities over the whole library (for choosing residents)."""
        probs = self.bin_probabilities(torch.arange(self.num_bins))
        owner = torch.repeat_interleave(torch.arange(len(self.clip_num_frames)), self.clip_num_bins)
        return torch.zeros(len(self.clip_num_frames), dtype=probs.dtype).index_add_(0, owner, probs)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> resident clip index (n,) and start frame (n,) for new episodes."""
        if self._probs is None:
            self._probs = self.bin_probabilities()
        choice = torch.multinomial(self._probs, n, replacement=True, generator=generator)
        resident_index = self._res_bin_owner[choice]
        length = self.clip_num_frames[self.resident[resident_index]]
        in_bin = torch.randint(0, self.bin_frames, (n,), generator=generator)
        back = torch.randint(0, self.start_shift_back_frames + 1, (n,), generator=generator)
        start = self._res_bin_within[choice] * self.bin_frames + in_bin - back
        start = torch.minimum(start.clamp_min(0), length - 1)
        return resident_index, start

    def record(
        self, clip_ids: torch.Tensor, start_frames: torch.Tensor, end_frames: torch.Tensor, failed: torch.Tensor
    ) -> None:
        """Count finished episodes: every bin from start to end was visited; failures in the end bin."""
        if clip_ids.numel() == 0:
            return
        offset = self.clip_bin_offset[clip_ids]
        first = offset + start_frames // self.bin_frames
        last = offset + end_frames.clamp_min(start_frames) // self.bin_frames
        diff = torch.zeros(self.num_bins + 1, dtype=torch.float64)
        diff.index_add_(0, first, torch.ones_like(first, dtype=torch.float64))
        diff.index_add_(0, last + 1, -torch.ones_like(last, dtype=torch.float64))
        self._delta_visits += torch.cumsum(diff, 0)[:-1]
        self._delta_failures.index_add_(0, last, failed.to(torch.float64))
        self._probs = None

    # ----- checkpoint and cross-process state ----------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "bin_failures": self._base_failures + self._delta_failures,
            "bin_visits": self._base_visits + self._delta_visits,
            "delta_failures": self._delta_failures.clone(),
            "delta_visits": self._delta_visits.clone(),
            "library_digest": self.digest.clone(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if not torch.equal(torch.as_tensor(state["library_digest"], dtype=torch.uint8), self.digest):
            raise ValueError("sampling state was saved for a different motion library (clip names differ)")
        if state["bin_failures"].shape != (self.num_bins,):
            raise ValueError(f"sampling state has {state['bin_failures'].shape[0]} bins, this library {self.num_bins}")
        # Everything loaded becomes the shared base (every process loads the same checkpoint).
        self._base_failures = state["bin_failures"].to(torch.float64).clone()
        self._base_visits = state["bin_visits"].to(torch.float64).clone()
        self._delta_failures = torch.zeros_like(self._base_failures)
        self._delta_visits = torch.zeros_like(self._base_visits)
        self._probs = None

    def sync(self, all_reduce_sum, device: torch.device | str = "cpu") -> None:
        """Combine every process's counts since the last sync (or load) in place: `all_reduce_sum`
        sums a tensor over processes in place (e.g. `torch.distributed.all_reduce`); the tensor
        is moved to `device` first (NCCL needs CUDA tensors)."""
        deltas = torch.cat([self._delta_failures, self._delta_visits]).to(device)
        all_reduce_sum(deltas)
        deltas = deltas.to("cpu", torch.float64)
        self._base_failures += deltas[: self.num_bins]
        self._base_visits += deltas[self.num_bins:]
        self._delta_failures.zero_()
        self._delta_visits.zero_()
        self._probs = None

    @staticmethod
    def merge_state_dicts(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Combine the states of processes that share a base (the last checkpoint load or merge):
        base + the sum of every process's counts since then. Load the result in every process."""
        if not states:
            raise ValueError("no sampling states to merge")
        digest = states[0]["library_digest"]
        if any(not torch.equal(s["library_digest"], digest) for s in states):
            raise ValueError("sampling states come from different motion libraries")
        base_f = states[0]["bin_failures"] - states[0]["delta_failures"]
        base_v = states[0]["bin_visits"] - states[0]["delta_visits"]
        total_f = base_f + sum(s["delta_failures"] for s in states)
        total_v = base_v + sum(s["delta_visits"] for s in states)
        return {
            "bin_failures": total_f,
            "bin_visits": total_v,
            "delta_failures": torch.zeros_like(total_f),
            "delta_visits": torch.zeros_like(total_v),
            "library_digest": digest.clone(),
        }
