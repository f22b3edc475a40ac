"""Exact nearest-neighbour distances to a memory bank, as chunked matrix products on the bank's device.

|q - b|^2 = |q|^2 - 2 q.b + |b|^2 turns the search into one GEMM per (query chunk, bank chunk); only a running
top-k survives each chunk, so memory stays bounded by `max_elements` whatever the bank size. The expansion loses
precision when embeddings crowd together far from the origin (Patch SVDD pulls them together), so the bank is
centred on its mean and the k best candidates are re-ranked with directly computed distances.
"""
from __future__ import annotations

import torch

from adbench_dbt.execution import fp32_numerics

DEFAULT_MAX_ELEMENTS = 1 << 24  # 16M distances (64 MB float32) per chunk
RERANK = 8  # candidates re-ranked exactly per query
QUERY_CHUNK = 1024


class NearestNeighborIndex:
    """A memory bank (N x D) with cached squared norms; `query` returns L2 distance and index of the nearest row."""

    def __init__(self, bank: torch.Tensor, max_elements: int = DEFAULT_MAX_ELEMENTS) -> None:
        if bank.dim() != 2 or len(bank) == 0:
            raise ValueError(f"NearestNeighborIndex: expected a non-empty N x D bank, got shape {tuple(bank.shape)}")
        if max_elements < 1:
            raise ValueError(f"NearestNeighborIndex: max_elements must be >= 1, got {max_elements}")
        bank = bank.float()
        self.center = bank.mean(0)
        self._centered = (bank - self.center).contiguous()  # distances are translation invariant
        self.sq_norms = (self._centered * self._centered).sum(1)
        self.max_elements = max_elements

    def __len__(self) -> int:
        return len(self._centered)

    @property
    def dim(self) -> int:
        return self._centered.shape[1]

    @property
    def bank(self) -> torch.Tensor:
        """The bank in its original coordinates (a new tensor)."""
        return self._centered + self.center

    @fp32_numerics
    def query(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """queries M x D -> (distances M float32, indices M long) of the nearest bank row."""
        if queries.dim() != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"NearestNeighborIndex.query: expected M x {self.dim}, got {tuple(queries.shape)}")
        centered = queries.to(self.center.device, torch.float32) - self.center
        m, n = len(centered), len(self._centered)
        k = min(RERANK, n)
        query_chunk = max(1, min(m, QUERY_CHUNK, self.max_elements // k))  # GEMM-shaped blocks, not GEMV
        bank_chunk = max(k, min(n, self.max_elements // query_chunk))
        candidates = torch.empty(m, k, dtype=torch.long, device=centered.device)
        for qs in range(0, m, query_chunk):
            q = centered[qs: qs + query_chunk]
            best = q.new_empty(len(q), 0)
            best_index = torch.zeros(len(q), 0, dtype=torch.long, device=q.device)
            for bs in range(0, n, bank_chunk):
                # |b|^2 - 2 q.b (|q|^2 is constant per row and does not change the ranking)
                partial = torch.addmm(self.sq_norms[bs: bs + bank_chunk][None], q,
                                      self._centered[bs: bs + bank_chunk].T, alpha=-2.0)
                value, arg = partial.topk(min(k, partial.shape[1]), dim=1, largest=False)
                best, keep = torch.cat([best, value], 1).topk(min(k, best.shape[1] + value.shape[1]), dim=1,
                                                               largest=False)
                best_index = torch.cat([best_index, arg + bs], 1).gather(1, keep)
            candidates[qs: qs + len(q)] = best_index
        exact = (centered[:, None, :] - self._centered[candidates]).norm(dim=2)
        distances, pick = exact.min(1)
        index = candidates.gather(1, pick[:, None]).squeeze(1)
        return distances, index


def nearest_neighbor_distance(queries: torch.Tensor, bank: torch.Tensor,
                              max_elements: int = DEFAULT_MAX_ELEMENTS) -> torch.Tensor:
    """Distance of every query row to its nearest bank row (one-off convenience around NearestNeighborIndex)."""
    return NearestNeighborIndex(bank, max_elements).query(queries)[0]
