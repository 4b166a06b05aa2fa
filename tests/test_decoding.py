"""Decoding as a stage: stored outputs, decoders as plugins, the n-gram LM, dev-only tuning, and
decoding stored cells again without retraining."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math

import numpy as np
import pytest
import torch

from harness.api import DecoderRequest, DecoderSpec
from harness.decoding.ngram import BOS, SMOOTHINGS, build_ngram
from harness.decoding.stage import Decoder, decode_cell
from harness.decoding.tuning import grid
from harness.engine import Vocabulary, greedy_decode
from harness.engine.logprobs import compact_log_probs, keep_argmax
from harness.errors import BenchError
from harness.store.outputs import OutputStore, decode_log_probs, encode_log_probs, encode_text
from harness.store.record import CellRecord, SplitFacts, StoredFile
from harness.store.results import ResultStore, StoredCell

SENTENCES = ["the cat sat on the mat", "the dog sat", "a cat and a dog", "the mat is red", "on the red mat the cat sat"]


# ----------------------------------------------------------------------------- stored outputs
def test_float16_outputs_keep_the_greedy_path_even_on_near_ties():
    """Planted near-ties that float16 rounding merges: the stored values still have the model's
    arg-max on every frame, and differ from the float32 log-probabilities by at most a float16 step."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(400, 12, generator=gen) * 3
    second = torch.randint(0, 12, (400,), generator=gen)
    best = logits.argmax(-1)
    # on every other frame a rival symbol 1e-5 below the best: equal once rounded to float16
    for f in range(0, 400, 2):
        if second[f] != best[f]:
            logits[f, second[f]] = logits[f, best[f]] - 1e-5
    plain = torch.log_softmax(logits, -1).numpy().astype(np.float16)
    assert (plain.argmax(-1) != best.numpy()).sum() > 10  # rounding alone would change the path
    kept = compact_log_probs(logits)
    assert kept.dtype == np.float16
    assert (kept.argmax(-1) == best.numpy()).all()
    exact = torch.log_softmax(logits, -1).numpy()
    assert np.abs(kept.astype(np.float32) - exact).max() < 0.02
    assert keep_argmax(np.zeros((0, 3), np.float16), np.zeros(0, int)).shape == (0, 3)


def test_evaluate_keeps_outputs_whose_greedy_decoding_is_its_hypotheses():
    """The engine's evaluate() on a model emitting noisy logits with planted near-ties, in padded
    batches: the kept float16 outputs have one row per valid frame, and decoding them greedily gives
    exactly the hypotheses evaluate() returned (which keep_log_probs does not change)."""
    from contextlib import nullcontext

    from harness.engine import Split, evaluate
    from harness.plan.config import RuntimeSettings

    vocab = Vocabulary(("<blank>", " ", "a", "b", "c", "d", "e"))
    gen = torch.Generator().manual_seed(1)
    frames = [int(n) for n in torch.randint(5, 60, (12,), generator=gen)]

    class Features:
        def __init__(self):
            self.frames = frames
            self.table = []
            for n in frames:
                x = torch.randn(n, len(vocab), generator=gen) * 2
                x[::3, 3] = x[::3].max(-1).values - 1e-5  # near-ties float16 cannot tell apart
                self.table.append(x)

        def batch(self, batch, grad=False):
            width = max(self.frames[i] for i in batch)
            out = torch.full((len(batch), width, len(vocab)), 50.0)  # padding: must never be kept
            for row, i in enumerate(batch):
                out[row, : self.frames[i]] = self.table[i]
            return out, torch.tensor([self.frames[i] for i in batch])

    class Model(torch.nn.Module):
        def head(self, feats, mask):
            return feats

    split = Split("test", ids=[f"u{i:02d}" for i in range(12)], audio=[np.zeros(n * 320) for n in frames],
                  refs=["a b"] * 12)
    runtime = RuntimeSettings(eval_batch_seconds=2.0)  # several padded batches
    features = Features()
    kept = evaluate(Model(), features, split, vocab, runtime, nullcontext(), keep_log_probs=True)
    plain = evaluate(Model(), features, split, vocab, runtime, nullcontext())
    assert plain.log_probs is None and [h for *_, h in plain.hypotheses] == [h for *_, h in kept.hypotheses]
    assert any(h for *_, h in kept.hypotheses)
    for (utt, _, hyp), n in zip(kept.hypotheses, frames):
        lp = kept.log_probs[utt]
        assert lp.shape == (n, len(vocab)) and lp.dtype == np.float16
        assert greedy_decode(lp.argmax(-1).tolist(), vocab) == hyp


def test_output_files_are_content_addressed_and_round_trip(tmp_path):
    arrays = {"b": np.arange(12, dtype=np.float16).reshape(3, 4), "a": np.ones((2, 4), np.float16)}
    blob = encode_log_probs(arrays)
    assert blob == encode_log_probs(dict(reversed(list(arrays.items()))))  # the same content, the same name
    back = decode_log_probs(blob.content)
    assert sorted(back) == ["a", "b"] and all((back[k] == arrays[k]).all() for k in arrays)
    # header plus 2 bytes per value: 20 values
    assert len(blob.content) - blob.content.index(b"\n") - 1 == 2 * 20
    store = OutputStore.beside(tmp_path / "results.sqlite")
    assert store.root == tmp_path / "results.sqlite.outputs"
    path = store.put(blob)
    assert store.put(blob) == path and path.name == f"{blob.sha256}.ctc"
    assert set(store.log_probs(blob.sha256)) == {"a", "b"}
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(BenchError, match="do not match their digest"):
        store.log_probs(blob.sha256)
    text = encode_text(["a  b", "c"])
    store.put(text)
    assert store.text(text.sha256) == ["a b", "c"]


def test_record_names_its_output_files_and_old_records_still_read():
    record = CellRecord(identity={}, seed=0, log_probs={"test": StoredFile("ab" * 32, 1234, ".ctc", 3, 99)},
                        train_text=StoredFile("cd" * 32, 40, ".txt", 5))
    again = CellRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again.log_probs["test"].bytes == 1234 and again.train_text.utterances == 5 and again.has_log_probs
    old = CellRecord.from_json({"version": 2, "identity": {}, "seed": 0})
    assert old.log_probs == {} and old.train_text is None and not old.has_log_probs
    assert "log_probs" not in old.to_json()


# ----------------------------------------------------------------------------- the n-gram LM
@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_ngram_probabilities_sum_to_one_in_every_context(order, smoothing):
    model = build_ngram(SENTENCES, order, smoothing)
    words = [g[0] for g in model.grams[0] if g[0] != BOS]  # the vocabulary, </s> and <unk> included
    contexts = [()] + [g for n in range(order - 1) for g in model.grams[n]] + [("never", "seen")]
    for context in contexts:
        total = sum(10 ** model.log10_prob(w, context) for w in words)
        assert total == pytest.approx(1.0, abs=1e-9), context


def test_kneser_ney_bigram_by_hand():
    """Two sentences, "a b" and "a c": the values worked out on paper."""
    model = build_ngram(["a b", "a c"], order=2)
    # bigram counts: <s> a 2, a b 1, a c 1, b </s> 1, c </s> 1 -> n1=4, n2=1, D2 = 4/6
    # unigram continuation counts: a 1 (after <s>), b 1, c 1, </s> 2 -> n1=3, n2=1, D1 = 3/5; total 5
    d1, d2, v = 3 / 5, 4 / 6, 5  # vocabulary a b c </s> <unk>
    uni_gamma = d1 * 4 / 5
    p_b = (1 - d1) / 5 + uni_gamma / v
    assert 10 ** model.log10_prob("b", []) == pytest.approx(p_b)
    # p(b | a) = (1 - D2)/2 + D2 * 2/2 * p(b)
    assert 10 ** model.log10_prob("b", ["a"]) == pytest.approx((1 - d2) / 2 + d2 * p_b)
    # unseen after a: the back-off weight times the unigram
    assert 10 ** model.log10_prob("a", ["a"]) == pytest.approx(d2 * ((1 - d1) / 5 + uni_gamma / v))
    arpa = model.to_arpa()
    assert "ngram 1=6" in arpa and "ngram 2=5" in arpa and "\\end\\" in arpa


def test_kenlm_reads_the_arpa_file_with_the_same_probabilities(tmp_path):
    kenlm = pytest.importorskip("kenlm")
    model = build_ngram(SENTENCES, order=3)
    path = tmp_path / "lm.arpa"
    path.write_text(model.to_arpa())
    lm = kenlm.Model(str(path))
    for sentence in ["the cat sat on the red mat", "a dog is red", "the unknownword sat"]:
        words = [BOS, *sentence.split(), "</s>"]
        ours = sum(model.log10_prob(w, words[max(0, i - 2):i]) for i, w in enumerate(words) if i > 0)
        assert lm.score(sentence, bos=True, eos=True) == pytest.approx(ours, abs=1e-4)


def test_beam_lm_refuses_an_order_kenlm_cannot_read(tmp_path):
    pytest.importorskip("pyctcdecode")
    pytest.importorskip("kenlm")
    from harness.plugins import load_registry

    spec = load_registry().decoder("beam-lm").spec
    with pytest.raises(BenchError, match="order 2 to 6"):
        spec.build(DecoderRequest(VOCAB, "es", ["b c"], {**spec.defaults, "order": 1}, tmp_path))


def test_bad_lm_options_are_one_line_errors():
    with pytest.raises(BenchError, match="smoothing"):
        build_ngram(SENTENCES, 3, "good-turing")
    with pytest.raises(BenchError, match="order"):
        build_ngram(SENTENCES, 0)
    with pytest.raises(BenchError, match="no words"):
        build_ngram(["", " "], 2)


# ----------------------------------------------------------------------------- tuning on dev only
VOCAB = ("<blank>", " ", "b", "c")


def _planted(symbol: int, utterances: int) -> dict[str, np.ndarray]:
    """Outputs whose greedy path spells one symbol per utterance."""
    out = {}
    for u in range(utterances):
        lp = np.full((3, len(VOCAB)), -8.0, np.float16)
        lp[:, 0] = -0.01
        lp[1, 0], lp[1, symbol] = -8.0, -0.01
        out[f"u{u}"] = lp
    return out


def _planted_cell(tmp_path, dev_symbol: int, test_symbol: int, refs: str):
    outputs = OutputStore(tmp_path / "outputs")
    files, rows = {}, {}
    for split, symbol in (("dev", dev_symbol), ("test", test_symbol)):
        blob = encode_log_probs(_planted(symbol, 4))
        outputs.put(blob)
        files[split] = StoredFile(blob.sha256, len(blob.content), ".ctc", 4, 12)
        rows[split] = [(f"u{u}", refs, "") for u in range(4)]
    text = encode_text(["b c"])
    outputs.put(text)
    record = CellRecord(identity={}, seed=0, vocabulary=VOCAB, log_probs=files,
                        train_text=StoredFile(text.sha256, len(text.content), ".txt", 1),
                        eval={"dev": SplitFacts(4, 2.0), "test": SplitFacts(4, 2.0)})
    cell = StoredCell("k", "m", "synthetic", "es", 0, {}, record, 0.0, 1.0)
    return cell, rows, outputs


def _swapping_decoder(calls: list):
    """alpha=0: greedy; alpha=1: b and c swapped. Records which split it decoded (by its first frame)."""
    vocab = Vocabulary(VOCAB)

    def build(request: DecoderRequest):
        assert request.train_text == ["b c"]

        def decode(log_probs, weights):
            calls.append((int(log_probs[0][1].argmax()), dict(weights)))
            text = [greedy_decode(lp.argmax(-1).tolist(), vocab) for lp in log_probs]
            return [t.translate(str.maketrans("bc", "cb")) if weights["alpha"] else t for t in text]

        return decode

    return DecoderSpec("swap", build, defaults={"alpha": [0.0, 1.0]}, tuned=("alpha",), tune_metric="wer")


def test_weights_are_chosen_on_dev_only_and_test_is_decoded_once(tmp_path):
    """Planted outputs: on dev the model says b (the reference), on test c (the reference is b).
    alpha=1 (swap) would be best on test; dev picks alpha=0, and test is decoded once, with it."""
    from harness.api import MetricSpec
    from plugins.metrics.jiwer_metrics import wer as wer_of

    def wer():
        return MetricSpec("wer", wer_of)

    cell, rows, outputs = _planted_cell(tmp_path, dev_symbol=2, test_symbol=3, refs="b")
    calls: list = []
    spec = _swapping_decoder(calls)
    result = decode_cell(cell, Decoder(spec, spec.defaults), rows, outputs, [wer()], wer(), tmp_path)
    assert result["decoding"]["weights"] == {"alpha": 0.0}
    assert result["decoding"]["dev_score"] == 0.0 and result["decoding"]["grid_points"] == 2
    assert result["metrics"]["dev"]["wer"] == 0.0 and result["metrics"]["test"]["wer"] == 1.0
    test_calls = [weights for symbol, weights in calls if symbol == 3]
    assert test_calls == [{"alpha": 0.0}]  # once, with dev's choice
    # the mirror image: dev says c, so swapping wins on dev and is kept on test
    cell, rows, outputs = _planted_cell(tmp_path / "mirror", dev_symbol=3, test_symbol=2, refs="b")
    result = decode_cell(cell, Decoder(spec, spec.defaults), rows, outputs, [wer()], wer(), tmp_path)
    assert result["decoding"]["weights"] == {"alpha": 1.0} and result["metrics"]["test"]["wer"] == 1.0


def test_grid_of_tuned_options():
    assert grid({"alpha": [0, 1], "beta": 2}, ("alpha", "beta")) == [{"alpha": 0.0, "beta": 2.0},
                                                                    {"alpha": 1.0, "beta": 2.0}]
    with pytest.raises(BenchError, match="not a number"):
        grid({"alpha": "high"}, ("alpha",))


# ----------------------------------------------------------------------------- the built-in decoders
def test_greedy_decoder_plugin_is_bench_greedy_decoding():
    from harness.plugins import load_registry

    spec = load_registry().decoder("greedy").spec
    lp = _planted(2, 2)
    decode = spec.build(DecoderRequest(VOCAB, "es", [], {}, None))
    assert decode(list(lp.values()), {}) == ["b", "b"]


def test_beam_lm_prefers_the_words_of_the_training_text(tmp_path):
    """A planted ambiguity: per frame, 'o' slightly above 'a' in "the cat sat". Greedy and beam
    without LM write "cot"; with an LM of the training text (where "cat" is frequent), beam-lm
    writes "cat"."""
    pytest.importorskip("pyctcdecode")
    pytest.importorskip("kenlm")
    from harness.plugins import load_registry

    registry = load_registry()
    vocab = ("<blank>", " ", "a", "c", "e", "h", "o", "s", "t")
    index = {s: i for i, s in enumerate(vocab)}
    frames = []
    for ch in "the cat sat":
        row = np.full(len(vocab), -12.0)
        if ch == "a" and not frames[-2:] == []:
            row[index["o"]], row[index["a"]] = math.log(0.55), math.log(0.45)
        else:
            row[index[ch]] = 0.0
        frames += [row, np.where(np.arange(len(vocab)) == 0, 0.0, -12.0)]  # each symbol, then a blank
    lp = [np.array(frames, np.float16)]
    text = ["the cat sat"] * 20 + ["a cat sat on the hat"] * 5 + ["the cot"]
    out = {}
    for name in ("greedy", "beam", "beam-lm"):
        spec = registry.decoder(name).spec
        options = {**spec.defaults, **({"alpha": 1.0, "beta": 0.0} if name == "beam-lm" else {})}
        decode = spec.build(DecoderRequest(vocab, "en", text, options, tmp_path))
        out[name] = decode(lp, {k: options[k] for k in spec.tuned})[0]
    assert out["greedy"] == "the cot sot" and out["beam"] == "the cot sot"
    assert out["beam-lm"] == "the cat sat"
    # the LM is cached by content: one ARPA file
    assert len(list((tmp_path / "decoding" / "lm").glob("*.arpa"))) == 1


def test_bench_list_decoders_and_unknown_decoder(bench, small_config):
    code, out, _ = bench("list", "--decoders")
    assert code == 0
    assert all(name in out for name in ("greedy", "beam-lm", "alpha beta", "kneser-ney"))
    assert "tiny-wav2vec2" not in out  # only decoders
    code, _, err = bench("run", "--config", str(small_config), "--decoders", "greedy,beem", "--dry-run")
    assert code == 2
    assert "error: unknown decoder 'beem'" in err and "did you mean 'beam'" in err.lower() and "hint:" in err
    code, _, err = bench("run", "--config", str(small_config), "--decoders", "beam-lm", "--dry-run",
                         "--set", "decoders.beam-lm.alhpa=1")
    assert code == 2 and "no option 'alhpa'" in err and "alpha" in err
    code, _, err = bench("run", "--config", str(small_config), "--decoders", "beam", "--dry-run",
                         "--set", "decoders.beam-lmm.order=2")
    assert code == 2 and "[decoders.beam-lmm] names no registered decoder" in err and "beam-lm" in err
    if importlib.util.find_spec("kenlm") and importlib.util.find_spec("pyctcdecode"):
        code, _, err = bench("report", "--config", str(small_config), "--decoders", "beam-lm",
                             "--set", "decoders.beam-lm.smoothing=good-turing")
        assert code == 2 and "smoothing='good-turing' is not known" in err and "kneser-ney" in err


# ----------------------------------------------------------------------------- stored cells decoded again
def _store_with_outputs(bench, config, tmp_path, steps="3"):
    store = tmp_path / "results.sqlite"
    code, _, err = bench("run", "--config", str(config), "--models", "tiny-wav2vec2", "--langs", "es",
                         "--store", str(store), "--set", f"train.steps={steps}", "--no-progress")
    assert code == 0, err
    return store


def _fail_training(monkeypatch):
    import harness.engine.setup as setup_module

    def no_training(*args, **kwargs):
        raise AssertionError("a cell was trained again")

    monkeypatch.setattr(setup_module.CellSetup, "fit", no_training)
    monkeypatch.setattr(setup_module.CellSetup, "build_model", no_training)


@pytest.mark.slow
def test_stored_outputs_decode_to_the_stored_hypotheses_and_report_without_training(bench, small_config, tmp_path,
                                                                                     monkeypatch):
    store_path = _store_with_outputs(bench, small_config, tmp_path)
    with ResultStore(store_path, readonly=True) as store:
        cell = store.cells()[0]
        rows = {s: store.hypotheses(cell.key, s) for s in ("dev", "test")}
    record = cell.record
    outputs = OutputStore.beside(store_path)
    vocab = Vocabulary(record.vocabulary)
    for split in ("dev", "test"):
        stored = record.log_probs[split]
        path = outputs.path(stored.sha256, ".ctc")
        assert path.stat().st_size == stored.bytes and stored.utterances == len(rows[split])
        log_probs = outputs.log_probs(stored.sha256)
        assert sum(lp.shape[0] for lp in log_probs.values()) == stored.frames
        assert all(lp.shape[1] == len(vocab) for lp in log_probs.values())
        # exactness: greedy decoding of the stored outputs is the stored hypotheses
        assert [greedy_decode(log_probs[u].argmax(-1).tolist(), vocab) for u, _, _ in rows[split]] == \
               [h for _, _, h in rows[split]]
    assert outputs.text(record.train_text.sha256)[0] == outputs.text(record.train_text.sha256)[0].lower()

    _fail_training(monkeypatch)
    pytest.importorskip("pyctcdecode")
    pytest.importorskip("kenlm")
    out = tmp_path / "report"
    code, stdout, err = bench("report", "--config", str(small_config), "--models", "tiny-wav2vec2", "--langs", "es",
                              "--store", str(store_path), "--decoders", "greedy,beam,beam-lm", "--out", str(out))
    assert code == 0, err
    assert "protocol finetune+beam-lm" in stdout
    assert "Statistics (synthetic, protocol finetune+beam-lm" in stdout  # statistics per decoder
    assert "differs from their stored hypotheses" not in err  # the report checks greedy exactness too
    assert "protocol finetune+beam" in stdout and "no cell was trained again" in stdout
    assert "s per hour of test audio" in stdout
    matrix = json.loads((out / "matrix.json").read_text())
    decoders = {c["decoder"] for c in matrix["cells"]}
    assert decoders == {"greedy", "beam", "beam-lm"}
    lm = [c for c in matrix["cells"] if c["decoder"] == "beam-lm"][0]["decoding"]
    assert set(lm["weights"]) == {"alpha", "beta"} and lm["grid_points"] == 30 and lm["tune_metric"] == "wer"
    greedy = [c for c in matrix["cells"] if c["decoder"] == "greedy"]
    assert greedy[0]["metrics"] == cell.metrics  # greedy unchanged
    speed = {row["decoder"]: row for row in matrix["decoding"]}
    assert speed["beam"]["seconds_per_audio_hour"] > 0
    # compare per decoder: the beam view is its own row
    base = tmp_path / "base.json"
    code, _, err = bench("report", "--config", str(small_config), "--models", "tiny-wav2vec2", "--langs", "es",
                         "--store", str(store_path), "--decoders", "greedy,beam", "--out", str(out),
                         "--json", str(base))
    assert code == 0, err
    code, stdout, err = bench("compare", str(base), "--config", str(small_config), "--models", "tiny-wav2vec2",
                              "--langs", "es", "--store", str(store_path), "--decoders", "greedy,beam")
    assert code == 0, err
    assert "0 missing" in stdout and "[finetune+beam]" not in err
    # bench run --decoders: nothing to compute, the stored cells decoded (from the cache) and shown
    code, stdout, err = bench("run", "--config", str(small_config), "--models", "tiny-wav2vec2", "--langs", "es",
                              "--store", str(store_path), "--decoders", "greedy,beam", "--no-progress")
    assert code == 0, err
    assert "0 cells computed, 1 already stored" in stdout and "protocol finetune+beam" in stdout
    # a store copied without its outputs folder: one error line naming the folder, greedy still reports
    outputs.root.rename(tmp_path / "elsewhere")
    code, _, err = bench("report", "--config", str(small_config), "--models", "tiny-wav2vec2", "--langs", "es",
                         "--store", str(store_path), "--decoders", "greedy,beam", "--out", str(out))
    assert code == 2 and "error: stored outputs" in err and "are missing" in err and "results.sqlite.outputs" in err
    code, _, err = bench("report", "--config", str(small_config), "--models", "tiny-wav2vec2", "--langs", "es",
                         "--store", str(store_path), "--out", str(out))
    assert code == 0, err


@pytest.mark.slow
def test_cells_without_stored_outputs_are_greedy_only_and_say_so(bench, small_config, tmp_path, monkeypatch):
    store_path = _store_with_outputs(bench, small_config, tmp_path)
    with ResultStore(store_path) as store:  # as a cell stored before bench kept outputs
        cell = store.cells()[0]
        store.update_scores(cell.key, cell.metrics, dataclasses.replace(cell.record, log_probs={}, train_text=None))
    _fail_training(monkeypatch)
    pytest.importorskip("pyctcdecode")
    code, stdout, err = bench("report", "--config", str(small_config), "--models", "tiny-wav2vec2", "--langs", "es",
                              "--store", str(store_path), "--decoders", "greedy,beam", "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert "computed before bench stored model outputs, so they are decoded greedily only" in err
    assert "finetune+beam" not in stdout


def test_merge_copies_the_stored_outputs(tmp_path):
    from harness.store.merge import merge_stores

    blob = encode_log_probs({"u": np.zeros((2, 3), np.float16)})
    text = encode_text(["a b"])
    source = tmp_path / "a.sqlite"
    OutputStore.beside(source).put(blob)
    OutputStore.beside(source).put(text)
    record = CellRecord(identity={}, seed=0, log_probs={"test": StoredFile(blob.sha256, len(blob.content))},
                        train_text=StoredFile(text.sha256, len(text.content), ".txt", 1))
    with ResultStore(source) as store:
        store.put("k", model="m", dataset="d", language="es", seed=0, metrics={"test": {"cer": 0.5}}, record=record,
                  hypotheses={"test": [("u", "a", "")]}, duration_s=1.0)
    merge_stores([source], tmp_path / "c.sqlite")
    target = OutputStore.beside(tmp_path / "c.sqlite")
    assert set(target.log_probs(blob.sha256)) == {"u"} and target.text(text.sha256) == ["a b"]
