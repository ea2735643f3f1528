"""The offline GPT-2 encoding gives tiktoken's gpt2 ids and refuses a corrupt ranks file."""

from __future__ import annotations

import pytest

from ngpt_tune import tokenizer
from ngpt_tune.errors import DataError
from ngpt_tune.tokenizer import EOT, encode_documents, gpt2_encoding


@pytest.fixture
def fresh_cache():
    gpt2_encoding.cache_clear()
    yield
    gpt2_encoding.cache_clear()


def test_known_ids():
    enc = gpt2_encoding()
    assert enc.encode_ordinary("Hello world") == [15496, 995]
    assert enc.encode("<|endoftext|>", allowed_special="all") == [EOT] == [50256]
    assert enc.eot_token == EOT
    assert enc.n_vocab == 50257


def test_round_trip_and_cached():
    text = "nGPT normalises every vector onto the unit sphere. ünïcödé ✓\n\tend"
    enc = gpt2_encoding()
    assert enc.decode(enc.encode_ordinary(text)) == text
    assert gpt2_encoding() is enc


def test_encode_documents_prefixes_eot_and_ignores_special_text():
    docs = encode_documents(["Hello world", "a <|endoftext|> b"])
    assert docs[0].tolist() == [EOT, 15496, 995]
    assert docs[0].dtype.name == "uint16"
    assert docs[1][0] == EOT and EOT not in docs[1][1:].tolist()
    assert gpt2_encoding().decode(docs[1][1:].tolist()) == "a <|endoftext|> b"


def test_tampered_ranks_file_is_rejected(tmp_path, monkeypatch, fresh_cache):
    bad = tmp_path / "r50k_base.tiktoken"
    bad.write_bytes(tokenizer.RANKS_PATH.read_bytes()[:-10])
    monkeypatch.setattr(tokenizer, "RANKS_PATH", bad)
    with pytest.raises(DataError, match="sha256") as info:
        gpt2_encoding()
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_missing_ranks_file_is_a_data_error(tmp_path, monkeypatch, fresh_cache):
    monkeypatch.setattr(tokenizer, "RANKS_PATH", tmp_path / "nope.tiktoken")
    with pytest.raises(DataError, match="nope.tiktoken"):
        gpt2_encoding()
