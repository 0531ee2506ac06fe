import io
import random
import subprocess
import sys

import pytest
import sentencepiece as spm

from dragoman.data.tokenizers import (
    BOS,
    EOS,
    PAD,
    SPECIALS,
    UNK,
    load_tokenizer,
    train_tokenizer,
)
from dragoman.errors import DragomanError

WORDS = (
    "Größe ändern… %s Datei(en) öffnen speichern schließen Fenster Ansicht Hilfe "
    "the file was saved opened closed window view help resize %d item(s)"
).split()
SENTENCES = ["Größe ändern…", "%s Datei(en)", "the window was closed", "Hilfe öffnen"]
SUBWORD_VOCAB = 300  # byte fallback alone takes 256 pieces, plus 4 specials and the characters
KINDS = ("bpe", "unigram", "word", "char")


def corpus(n: int = 200, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 9))) for _ in range(n)]


def train(kind: str, **options):
    vocab_size = SUBWORD_VOCAB if kind in ("bpe", "unigram") else 100
    return train_tokenizer(kind, corpus(), vocab_size, **options)


@pytest.fixture(scope="module", params=KINDS)
def tokenizer(request):
    return train(request.param)


def test_round_trip(tokenizer):
    for sentence in SENTENCES:
        assert tokenizer.decode(tokenizer.encode(sentence)) == sentence


def test_specials_have_fixed_ids_and_pieces(tokenizer):
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)
    assert tokenizer.pieces([PAD, UNK, BOS, EOS]) == list(SPECIALS)
    assert UNK not in tokenizer.encode(SENTENCES[0])


def test_decode_skips_pad_bos_eos_anywhere(tokenizer):
    ids = tokenizer.encode(SENTENCES[0])
    assert tokenizer.decode([BOS, PAD, *ids, EOS, PAD, PAD]) == SENTENCES[0]


def test_encode_batch_equals_encode(tokenizer):
    assert tokenizer.encode_batch(SENTENCES) == [tokenizer.encode(s) for s in SENTENCES]


def test_save_then_load_encodes_identically(tokenizer, tmp_path):
    tokenizer.save(tmp_path / "tok.de")
    loaded = load_tokenizer(tmp_path / "tok.de")
    assert (loaded.kind, loaded.vocab_size) == (tokenizer.kind, tokenizer.vocab_size)
    assert loaded.encode_batch(SENTENCES) == tokenizer.encode_batch(SENTENCES)
    every_id = list(range(tokenizer.vocab_size))
    assert loaded.pieces(every_id) == tokenizer.pieces(every_id)


def test_save_replaces_files_and_leaves_no_temporaries(tokenizer, tmp_path):
    tokenizer.save(tmp_path / "tok")
    tokenizer.save(tmp_path / "tok")
    expected = {"tok.json", "tok.spm"} if tokenizer.kind in ("bpe", "unigram") else {"tok.json"}
    assert {p.name for p in tmp_path.iterdir()} == expected


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_subword_unseen_characters_survive_via_byte_fallback(kind):
    tokenizer = train(kind)
    unseen = "日本語 ✓ 🙂 Ω"
    ids = tokenizer.encode(unseen)
    assert UNK not in ids
    assert "<0xE6>" in tokenizer.pieces(ids)  # first UTF-8 byte of 日
    assert tokenizer.decode(ids) == unseen


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_subword_round_trip_collapses_whitespace_runs(kind):
    tokenizer = train(kind)
    assert tokenizer.decode(tokenizer.encode("  Größe   ändern… ")) == "Größe ändern…"


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_subword_vocab_too_small_says_how_large_it_must_be(kind):
    with pytest.raises(DragomanError) as caught:
        train_tokenizer(kind, corpus(), 100)
    message = str(caught.value)
    assert "vocab_size 100 is too small" in message
    assert "256 byte pieces" in message
    assert "set vocab_size to" in message


def test_subword_training_is_reproducible_across_processes():
    # sentencepiece's own sampler ignores seeds; with sample_size < corpus size, two fresh
    # processes must still learn the same model.
    script = (
        "import hashlib, random\n"
        "from dragoman.data.tokenizers import train_tokenizer\n"
        "rng = random.Random(5)\n"
        "texts = [' '.join(''.join(rng.choices('abcdefgh', k=rng.randint(2, 7)))"
        " for _ in range(8)) for _ in range(1000)]\n"
        "tok = train_tokenizer('bpe', texts, 400, sample_size=300, seed=7)\n"
        "print(hashlib.sha256(tok.model).hexdigest())\n"
    )
    first, second = (subprocess.run([sys.executable, "-c", script], capture_output=True) for _ in "12")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout


def test_word_round_trip_normalizes_spacing():
    tokenizer = train("word")
    assert tokenizer.decode(tokenizer.encode(" Größe  ändern… ")) == "Größe ändern…"


def test_char_round_trip_is_exact():
    tokenizer = train("char")
    assert tokenizer.decode(tokenizer.encode(" Größe  ändern… ")) == " Größe  ändern… "


@pytest.mark.parametrize("kind, unknown", [("word", "Zeitgeist"), ("char", "Ω")])
def test_word_and_char_unknowns_map_to_unk(kind, unknown):
    tokenizer = train(kind)
    ids = tokenizer.encode(f"Hilfe {unknown}")
    assert ids[-1] == UNK
    assert ids.count(UNK) == 1


def test_word_literal_special_in_text_is_unknown():
    tokenizer = train_tokenizer("word", ["<s> a </s>"], 0)
    assert tokenizer.encode("<s> a </s>") == [UNK, 4, UNK]


def test_word_vocab_most_frequent_first_and_vocab_size_respected():
    texts = ["c b a", "b a", "a", "d"]
    full = train_tokenizer("word", texts, 0)
    # a: 3, b: 2, then c and d tie at 1 and keep the order they were first seen in.
    assert full.pieces(range(full.vocab_size)) == [*SPECIALS, "a", "b", "c", "d"]
    small = train_tokenizer("word", texts, 6)
    assert small.vocab_size == 6
    assert small.pieces(range(6)) == [*SPECIALS, "a", "b"]
    assert small.encode("a b c") == [4, 5, UNK]


def test_word_min_freq():
    tokenizer = train_tokenizer("word", ["a a b", "a b c"], 0, min_freq=2)
    assert tokenizer.pieces(range(tokenizer.vocab_size)) == [*SPECIALS, "a", "b"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("texts", [[], ["", "   "]])
def test_no_text_to_learn_from(kind, texts):
    with pytest.raises(DragomanError, match="no text to learn a tokenizer from"):
        train_tokenizer(kind, texts, SUBWORD_VOCAB)


def test_unknown_kind_and_tiny_vocab_size():
    with pytest.raises(DragomanError, match="unknown tokenizer kind 'wordpiece'"):
        train_tokenizer("wordpiece", corpus(), 100)
    with pytest.raises(DragomanError, match="vocab_size 4 leaves no room"):
        train_tokenizer("word", corpus(), 4)


def test_load_missing_files_name_the_file(tmp_path):
    with pytest.raises(DragomanError) as caught:
        load_tokenizer(tmp_path / "tok")
    assert str(caught.value).startswith(f"{tmp_path / 'tok.json'}: file not found")

    (tmp_path / "tok.json").write_text('{"kind": "bpe"}')
    with pytest.raises(DragomanError) as caught:
        load_tokenizer(tmp_path / "tok")
    assert str(caught.value).startswith(f"{tmp_path / 'tok.spm'}: file not found")


@pytest.mark.parametrize(
    "meta",
    [
        "{not json",
        "[1, 2]",
        '{"kind": "word"}',
        '{"kind": "word", "tokens": ["a", "b"]}',
        '{"kind": "char", "tokens": ["<pad>", "<unk>", "<s>", "</s>", "x", "x"]}',
    ],
)
def test_load_corrupt_json_names_the_file(tmp_path, meta):
    (tmp_path / "tok.json").write_text(meta)
    with pytest.raises(DragomanError) as caught:
        load_tokenizer(tmp_path / "tok")
    assert str(caught.value).startswith(f"{tmp_path / 'tok.json'}: corrupt tokenizer file")


def test_load_unknown_kind(tmp_path):
    (tmp_path / "tok.json").write_text('{"kind": "morfessor"}')
    with pytest.raises(DragomanError, match="unknown tokenizer kind 'morfessor'"):
        load_tokenizer(tmp_path / "tok")


def test_load_corrupt_sentencepiece_model_names_the_file(tmp_path):
    (tmp_path / "tok.json").write_text('{"kind": "unigram"}')
    (tmp_path / "tok.spm").write_bytes(b"\x00 not a protobuf \xff")
    with pytest.raises(DragomanError) as caught:
        load_tokenizer(tmp_path / "tok")
    assert str(caught.value).startswith(f"{tmp_path / 'tok.spm'}: corrupt sentencepiece model")


def test_load_foreign_sentencepiece_model_is_refused(tmp_path):
    model = io.BytesIO()  # sentencepiece's default ids: <unk>=0, <s>=1, </s>=2, no <pad>
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_writer=model, vocab_size=50, minloglevel=2
    )
    (tmp_path / "tok.json").write_text('{"kind": "bpe"}')
    (tmp_path / "tok.spm").write_bytes(model.getvalue())
    with pytest.raises(DragomanError) as caught:
        load_tokenizer(tmp_path / "tok")
    assert str(caught.value).startswith(f"{tmp_path / 'tok.spm'}: not a dragoman model")


@pytest.mark.parametrize("kind", ["word", "char"])
def test_word_and_char_learn_from_the_sample_too(kind):
    texts = (f"w{i}" for i in range(5_000))  # a generator: read once, never held whole
    tokenizer = train_tokenizer(kind, texts, 0, sample_size=100, seed=3)
    if kind == "word":
        assert tokenizer.vocab_size == len(SPECIALS) + 100
    again = train_tokenizer(kind, (f"w{i}" for i in range(5_000)), 0, sample_size=100, seed=3)
    assert again.pieces(range(again.vocab_size)) == tokenizer.pieces(range(tokenizer.vocab_size))
