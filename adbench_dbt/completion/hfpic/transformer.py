"""Stage 1 of ICT: the BERT-mode GPT over palette tokens, with the official module and state-dict key names.

Official keys (`tok_emb`, `pos_emb`, `blocks.{i}.{ln1,ln2,attn.{key,query,value,proj},mlp.{0,2}}`, `ln_f`,
`head`) so ICT checkpoints load by key. ICT also stores a never-used lower-triangular buffer `blocks.{i}.attn.mask`
(1 x 1 x T x T per block: 140 MB at 35 layers); it is not kept here, `official_state_dict` adds it back and
`load_official_transformer` drops it after checking its shape.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adbench_dbt.execution import fp32_linear


class GELU2(nn.Module):
    """x * sigmoid(1.702 x): ICT's `GELU2`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
    """Full (non-causal) multi-head attention with separate q/k/v/proj linears; scaled_dot_product_attention, so a
    GPU uses flash attention."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
        self.key, self.query, self.value = (nn.Linear(n_embd, n_embd) for _ in range(3))
        self.proj = nn.Linear(n_embd, n_embd)
        self.n_head, self.dropout = n_head, dropout
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape

        def heads(linear: nn.Linear) -> torch.Tensor:
            return linear(x).view(b, t, self.n_head, c // self.n_head).transpose(1, 2)

        y = F.scaled_dot_product_attention(heads(self.query), heads(self.key), heads(self.value),
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x)) with MLP d -> 4d -> d, GELU2."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.attn = SelfAttention(n_embd, n_head, dropout)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), GELU2(), nn.Linear(4 * n_embd, n_embd),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TokenTransformer(nn.Module):
    """ICT's GPT in BERT mode: logits over the K palette entries at every position of a T-token image.

    Hole positions have their token embedding multiplied by 0 (ICT has no [MASK] vector); nothing else marks them.
    """

    def __init__(self, vocab_size: int = 512, block_size: int = 1024, n_layer: int = 35, n_embd: int = 1024,
                 n_head: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.vocab_size, self.block_size = vocab_size, block_size
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, block_size, n_embd))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*(Block(n_embd, n_head, dropout) for _ in range(n_layer)))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """ICT's init: N(0, 0.02) linears/embeddings, zero biases, unit LayerNorms (pos_emb stays zero)."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)

    def hidden(self, idx: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
        """idx, holes: B x T (long, bool) -> B x T x d after the final LayerNorm."""
        if idx.shape[1] != self.block_size:
            raise ValueError(f"expected {self.block_size} tokens per image, got {idx.shape[1]}")
        x = self.tok_emb(idx) * (~holes).unsqueeze(-1).to(self.pos_emb.dtype)
        return self.ln_f(self.blocks(self.drop(x + self.pos_emb)))

    def forward(self, idx: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
        """B x T x K logits."""
        return fp32_linear(self.head, self.hidden(idx, holes))

    def logits_at(self, idx: torch.Tensor, holes: torch.Tensor, position: int) -> torch.Tensor:
        """B x K logits of one position: the head runs on that position only (raster sampling)."""
        return fp32_linear(self.head, self.hidden(idx, holes)[:, position])

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict as ICT saves it: our keys plus each block's unused causal `attn.mask` buffer."""
        state = dict(self.state_dict())
        t = self.block_size
        mask = torch.tril(torch.ones(t, t)).view(1, 1, t, t)
        for i in range(len(self.blocks)):
            state[f"blocks.{i}.attn.mask"] = mask
        return state
