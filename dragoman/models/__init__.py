"""Models, and the one place that maps a config's `encoder`/`decoder` to classes.

transformer.py  Transformer (encoder-decoder) and TransformerEncoder
rnn.py          RNNEncoder, RNNDecoder (no attention, Bahdanau, Luong), RNNSeq2Seq
conv.py         ConvEncoder
classifier.py   EncoderClassifier: any encoder + pooling + head (task: classify)
lm.py           LanguageModel: decoder-only, causal EncoderLayers (task: lm)
attention.py    Bahdanau and Luong attention; layers.py: the shared leaves
base.py         the decoding contract search.py relies on
"""

from __future__ import annotations

from torch import nn

from dragoman.config import RECURRENT, ModelConfig
from dragoman.data.tokenizers import PAD
from dragoman.models.classifier import EncoderClassifier
from dragoman.models.conv import ConvEncoder
from dragoman.models.layers import TokenEmbedding
from dragoman.models.lm import LanguageModel
from dragoman.models.rnn import RNNDecoder, RNNEncoder, RNNSeq2Seq
from dragoman.models.transformer import Transformer, TransformerEncoder


def build_model(config: ModelConfig, src_vocab: int, tgt_vocab: int, task: str = "seq2seq") -> nn.Module:
    """The model a config describes, with freshly initialised weights. For task "classify",
    tgt_vocab is the number of classes; for "lm", src_vocab is not used."""
    c = config
    if task == "classify":
        embed = TokenEmbedding(src_vocab, c.d_model, PAD)
        return EncoderClassifier(embed, _encoder(c, embed), c.enc_out, tgt_vocab, c.pooling, c.dropout)
    if task == "lm":
        return LanguageModel(
            tgt_vocab,
            dim=c.d_model,
            heads=c.heads,
            ff=c.ff,
            layers=c.dec_layers,
            dropout=c.dropout,
            attention_dropout=c.attention_dropout,
            pre_norm=c.norm == "pre",
            positions=c.positions,
            max_positions=c.max_positions,
            tie_output=c.tie_output is not False,
        )
    if c.decoder == "transformer":
        return Transformer(
            src_vocab,
            tgt_vocab,
            dim=c.d_model,
            heads=c.heads,
            ff=c.ff,
            enc_layers=c.enc_layers,
            dec_layers=c.dec_layers,
            dropout=c.dropout,
            attention_dropout=c.attention_dropout,
            pre_norm=c.norm == "pre",
            positions=c.positions,
            max_positions=c.max_positions,
            share_embeddings=bool(c.share_embeddings),
            tie_output=c.tie_output is not False,
        )
    src_embed = TokenEmbedding(src_vocab, c.d_model, PAD)
    tgt_embed = src_embed if c.share_embeddings else TokenEmbedding(tgt_vocab, c.d_model, PAD)
    if c.share_embeddings and src_vocab != tgt_vocab:
        raise ValueError("shared embeddings need one joint vocabulary")
    return RNNSeq2Seq(_encoder(c, src_embed), _rnn_decoder(c, tgt_embed, tgt_vocab), c.max_positions)


def _encoder(c: ModelConfig, embed: TokenEmbedding) -> nn.Module:
    if c.encoder in RECURRENT:
        return RNNEncoder(
            embed, c.encoder, c.hidden, c.enc_layers, c.bidirectional, c.dropout, c.reverse_source
        )
    if c.encoder == "cnn":
        return ConvEncoder(embed, c.hidden, c.enc_layers, c.kernel_size, c.dropout, c.max_positions)
    return TransformerEncoder(
        embed,
        c.heads,
        c.ff,
        c.enc_layers,
        c.dropout,
        c.attention_dropout,
        c.norm == "pre",
        c.positions,
        c.max_positions,
    )


def _rnn_decoder(c: ModelConfig, embed: TokenEmbedding, vocab: int) -> RNNDecoder:
    out_dim = c.dec_hidden if c.attention == "none" else c.d_model
    return RNNDecoder(
        embed,
        vocab,
        c.decoder,
        c.dec_hidden,
        c.dec_layers,
        c.enc_out,
        c.attention,
        c.input_feeding,
        c.bridge,
        c.dropout,
        tie_output=c.tie_output if c.tie_output is not None else out_dim == c.d_model,
        scheduled_sampling=c.scheduled_sampling,
    )
