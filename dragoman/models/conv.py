"""Convolutional encoder (Gehring et al., 2017, "Convolutional Sequence to Sequence Learning").

Token + learned position embeddings, projected to C channels, then a stack of 1-D convolutions,
each with a gated linear unit (Dauphin et al., 2017) and a residual connection scaled by √0.5.
Padding is zeroed before every convolution, so a sentence's states do not depend on how much
padding its batch has. Shapes: B batch, S source length, E embedding width, C channels.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from dragoman.data.tokenizers import PAD
from dragoman.models.base import Memory
from dragoman.models.layers import Dropout, PositionalEmbedding, TokenEmbedding


class ConvEncoder(nn.Module):
    def __init__(
        self,
        embed: TokenEmbedding,
        channels: int,
        layers: int,
        kernel_size: int,
        dropout: float,
        max_len: int,
    ) -> None:
        super().__init__()
        self.embed = PositionalEmbedding(embed, "learned", max_len, dropout)
        self.project = nn.Linear(embed.embedding_dim, channels)
        self.convolutions = nn.ModuleList(
            nn.Conv1d(channels, 2 * channels, kernel_size, padding=kernel_size // 2) for _ in range(layers)
        )
        self.dropout = Dropout(dropout)

    def forward(self, src: Tensor) -> Memory:
        """src (B, S) → Memory with states (B, S, C); no final state (the bridge pools the states)."""
        mask = src != PAD  # (B, S)
        keep = mask[:, None, :].to(self.project.weight.dtype)  # (B, 1, S)
        x = self.project(self.embed(src)).transpose(1, 2)  # (B, C, S)
        for conv in self.convolutions:
            y = F.glu(conv(self.dropout(x) * keep), dim=1)  # (B, C, S)
            x = (x + y) * math.sqrt(0.5)
        return Memory(x.transpose(1, 2) * keep.transpose(1, 2), mask)
