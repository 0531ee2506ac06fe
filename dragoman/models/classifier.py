"""Encoder-only classifier (as BERT is used for classification; Devlin et al., 2019): any of the
encoder-decoder's encoders (Transformer, RNN/GRU/LSTM, convolutional), a pooling of its states into
one vector per text, and a linear head over the classes.

A BOS token is put in front of every input, so `pooling: first` reads a position that belongs to no
word (BERT's [CLS]); `encode` gives the encoder states, as every encoder model's does, so sentence
embeddings (embed.py) work for classifiers and encoder-decoders alike.

Shapes: B batch, S length, D encoder width, C classes.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from dragoman.data.tokenizers import BOS
from dragoman.models.base import Memory
from dragoman.models.layers import Dropout, TokenEmbedding, pool


class EncoderClassifier(nn.Module):
    def __init__(
        self,
        src_embed: TokenEmbedding,
        encoder: nn.Module,
        width: int,
        classes: int,
        pooling: str,
        dropout: float,
    ) -> None:
        super().__init__()
        self.src_embed = src_embed  # the encoder's, named for pretrained vectors
        self.encoder = encoder
        self.pooling = pooling
        self.head = nn.Sequential(Dropout(dropout), nn.Linear(width, classes))

    def encode(self, src: Tensor) -> Memory:
        """src (B, S) token ids, PAD-padded → the encoder's Memory over BOS + src."""
        return self.encoder(F.pad(src, (1, 0), value=BOS))

    def forward(self, src: Tensor) -> Tensor:
        """src (B, S) → class logits (B, C)."""
        memory = self.encode(src)
        return self.head(pool(memory.states, memory.mask, self.pooling))
