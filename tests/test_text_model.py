"""--text-model: a local Hugging Face model folder (here a tiny BERT with random weights, built
by the test) whose embeddings join the features, and the finetune baseline that fine-tunes it."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pandas as pd
import pytest
from conftest import write_bundle
from typer.testing import CliRunner

from automl import text_model
from automl.cli import app
from automl.errors import UsageError

transformers = pytest.importorskip("transformers")
runner = CliRunner()
WORDS = [f"w{i}" for i in range(120)] + ["good", "great", "bad", "awful"]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A BERT-shaped model folder, as save_pretrained writes it: config.json, model.safetensors, the tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = transformers.BertTokenizerFast.from_pretrained(folder)  # from the vocab.txt alone
    config = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=160)
    transformers.BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def text_table(n: int, seed: int = 0) -> pd.DataFrame:
    """Reviews of 6-16 words; the label is whether a positive word outnumbers a negative one."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for _ in range(n):
        words = list(rng.choice(WORDS[:120], size=rng.integers(6, 16)))
        positive = rng.random() < 0.5
        words += list(rng.choice(["good", "great"] if positive else ["bad", "awful"], size=2))
        rng.shuffle(words)
        rows.append(" ".join(words))
        labels.append(int(positive))
    return pd.DataFrame({"id": np.arange(n), "review": rows, "length": [len(r) for r in rows], "target": labels})


def test_a_folder_that_is_not_a_model_is_one_line(model_folder, tmp_path):
    with pytest.raises(UsageError, match="no such folder"):
        text_model.check(tmp_path / "nothing")
    broken = tmp_path / "broken"
    broken.mkdir()
    with pytest.raises(UsageError, match="no config.json"):
        text_model.check(broken)
    (broken / "config.json").write_text((model_folder / "config.json").read_text())
    with pytest.raises(UsageError, match=r"no weights \(model.safetensors"):
        text_model.check(broken)
    (broken / "model.safetensors").write_bytes((model_folder / "model.safetensors").read_bytes())
    with pytest.raises(UsageError, match="no tokenizer files"):
        text_model.check(broken)
    vocab = WORDS + [f"extra{i}" for i in range(50)]  # more tokens than the model has embeddings
    (broken / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *vocab]) + "\n")
    with pytest.raises(UsageError, match="do not belong together"):
        text_model.check(broken)
    found = text_model.check(model_folder)
    assert found["hidden"] == 32 and transformers.AutoTokenizer.from_pretrained(model_folder)("good w1").input_ids[1:3] == [
        5 + WORDS.index("good"), 5 + WORDS.index("w1")] and len(found["sha256"]) == 64


def test_the_cli_refuses_a_bad_folder_before_any_work(tmp_path):
    folder = write_bundle(tmp_path / "bundle", text_table(60), 40)
    result = runner.invoke(app, ["run", "reviews", "--from", str(folder), "--text-model", str(tmp_path),
                                 "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2
    assert f"--text-model {tmp_path}: no config.json" in result.output and result.output.count("\n") <= 3
    assert not (tmp_path / "data").exists()  # nothing read


def test_embeddings_are_mean_pooled_per_text_column_and_cached(model_folder, tmp_path, monkeypatch):
    frame = text_table(50)
    train, test = frame.iloc[:40].drop(columns="target"), frame.iloc[40:].drop(columns="target")
    model = text_model.check(model_folder)
    wide_train, wide_test, note = text_model.with_embeddings(train, test, model, tmp_path / "cache")
    names = [f"review_emb_{i}" for i in range(32)]
    assert list(wide_train.columns) == [*train.columns, *names] and wide_test.shape == (10, 3 + 32)
    assert wide_train[names].dtypes.eq(np.float32).all() and "review encoded" in note
    by_hand = text_model.Encoder(str(model_folder)).encode(np.array([train["review"].iloc[0]]), text_model.MAX_LENGTH)
    assert np.allclose(wide_train[names].iloc[0].to_numpy(), by_hand[0], atol=1e-5)

    monkeypatch.setattr(text_model, "Encoder", None)  # a second encoding would fail: the cache must answer
    again_train, _, note = text_model.with_embeddings(train, test, model, tmp_path / "cache")
    assert "review from the cache" in note and np.array_equal(again_train[names], wide_train[names])
    changed = train.assign(review=train["review"].str.upper())  # other texts: the cache does not apply
    with pytest.raises(TypeError):
        text_model.with_embeddings(changed, test, model, tmp_path / "cache")


def test_encoding_that_cannot_fit_its_time_is_cut_shorter_then_skipped(model_folder, tmp_path, monkeypatch):
    frame = text_table(50)
    train, test = frame.iloc[:40].drop(columns="target"), frame.iloc[40:].drop(columns="target")
    model = text_model.check(model_folder)
    # a model whose time grows with the text's length: 128 and 64 tokens do not fit 50 s for 50 texts, 32 does
    monkeypatch.setattr(text_model.Encoder, "probe", lambda self, texts, length: length / 50)
    wide, _, note = text_model.with_embeddings(train, test, model, tmp_path / "cut", seconds=50)
    assert note.endswith("texts cut to 32 tokens to fit the time)") and "review_emb_31" in wide.columns
    assert json.loads((tmp_path / "cut" / "plan.json").read_text()) == {"max_length": 32}

    _, _, note = text_model.with_embeddings(train, test, model, tmp_path / "skip", seconds=10)
    assert note.startswith("--text-model: skipped; encoding 50 texts would take about 32s")
    # resumed with all the time in the world, the run keeps its first pass's features: still without embeddings
    again, _, note = text_model.with_embeddings(train, test, model, tmp_path / "skip")
    assert list(again.columns) == list(train.columns) and "when this run began; a new --name encodes them" in note


def test_run_with_a_text_model_embeds_fine_tunes_and_resumes(model_folder, tmp_path):
    folder = write_bundle(tmp_path / "bundle", text_table(400, seed=1), 300)
    args = ["run", "reviews", "--from", str(folder), "--text-model", str(model_folder), "--models", "dummy,linear,finetune",
            "--metric", "accuracy", "--timeout", "20", "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")]
    start = time.monotonic()
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert time.monotonic() - start <= 20 * 1.05 + 5
    run_dir = tmp_path / "runs" / "reviews" / "default"
    assert "--text-model: 32 embedding columns per text column (review encoded" in first.output
    assert (run_dir / "text-embeddings" / "review.npy").is_file()
    board = pd.read_csv(run_dir / "leaderboard.csv").set_index("model")
    assert "finetune" in board.index and board.loc["finetune", "kind"] == "network"
    assert board.loc["finetune", "accuracy"] > board.loc["dummy", "accuracy"] + 0.1  # it learned the words
    assert json.loads((run_dir / "config.json").read_text())["text_model"]["sha256"] == text_model.check(model_folder)["sha256"]

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "review from the cache" in again.output and "finetune: finished earlier, reused" in again.output

    plain = [a for a in args if a not in ("--text-model", str(model_folder))]
    plain[plain.index("dummy,linear,finetune")] = "dummy,linear"
    without = runner.invoke(app, plain)  # the same run name without the model: refused, not mixed
    assert without.exit_code == 1 and "different text_model (--text-model)" in without.output


def test_a_model_that_cannot_be_encoded_with_is_refused(model_folder, tmp_path):
    folder = tmp_path / "t5-like"
    shutil.copytree(model_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"is_encoder_decoder": True}))
    with pytest.raises(UsageError, match="an encoder-decoder model"):
        text_model.check(folder)


def test_finetune_needs_a_text_model(tmp_path):
    folder = write_bundle(tmp_path / "bundle", text_table(60), 40)
    result = runner.invoke(app, ["run", "reviews", "--from", str(folder), "--models", "finetune",
                                 "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2 and "--models finetune fine-tunes the --text-model encoder" in result.output
