from exifclip.modeling.tokenization import build_exif_tokenizer, synthetic_exif_corpus


def test_exif_words_are_tokens_and_round_trip(tmp_path):
    from transformers import DistilBertTokenizerFast

    tok = build_exif_tokenizer()
    assert tok.tokenize("Exposure Time: 1/500") == ["exposure", "time", ":", "1", "/", "500"]
    ids = tok("Make: Canon")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    tok.save_pretrained(tmp_path)
    again = DistilBertTokenizerFast.from_pretrained(tmp_path)
    text = synthetic_exif_corpus()[0]
    assert again(text)["input_ids"] == tok(text)["input_ids"]


def test_a_loaded_tokenizer_normalises_as_the_one_the_model_was_trained_with(tmp_path):
    from exifclip.modeling.hub import load_tokenizer

    built = build_exif_tokenizer()
    built.save_pretrained(tmp_path / "first")
    loaded = load_tokenizer(tmp_path / "first")
    loaded.save_pretrained(tmp_path / "second")  # a fine-tuned or distilled model saves the tokenizer again
    text = "Make: Canon, Artist: Zo\u00eb \u6771\u4eac, Software: v1\x07beta"  # accent, CJK, a control character
    for tokenizer in (loaded, load_tokenizer(tmp_path / "second")):
        assert tokenizer(text)["input_ids"] == built(text)["input_ids"]


def test_vocabulary_comes_from_the_corpus():
    tok = build_exif_tokenizer(["Make: Hasselblad, Model: X2D 100C"] * 5, vocab_size=400)
    assert "hasselblad" in tok.get_vocab()
    assert len(tok) <= 400
    assert "[UNK]" not in tok.tokenize("Leica zq-9")  # unseen words are spelt with ## pieces


def test_same_corpus_same_vocabulary():
    corpus = synthetic_exif_corpus()
    assert build_exif_tokenizer(corpus).get_vocab() == build_exif_tokenizer(corpus).get_vocab()
    small = build_exif_tokenizer(corpus, vocab_size=250)
    assert len(small) <= 250 and "exposure" in small.get_vocab()  # the most frequent words come first


def test_truncation_to_model_max_length():
    tok = build_exif_tokenizer(model_max_length=16)
    out = tok(", ".join(synthetic_exif_corpus()), truncation=True)
    assert len(out["input_ids"]) == 16
