"""``bench download`` against a hub on the loopback address, and what a run says when inputs are missing.

The tests start a small HTTP server on 127.0.0.1 that answers the two endpoints
``huggingface_hub`` calls for a download (the repository's file list with sizes and hashes,
``/api/models/<repo>/revision/<rev>?blobs=true``, and the files, ``/<repo>/resolve/<commit>/<file>``
with range requests), serving a tiny wav2vec 2.0 checkpoint written here by transformers.
``bench download`` runs in a child process pointed at it through ``HF_ENDPOINT`` (the hub's
settings are read when ``huggingface_hub`` is imported), with its own empty ``HF_HOME``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import REPO, SMALL_TOML

REPO_ID = "bench-test/tiny-w2v2"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
#: huggingface_hub hands file data over in pieces of this size (constants.DOWNLOAD_CHUNK_SIZE)
HUB_CHUNK = 10 * 1024 * 1024


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> dict[str, bytes]:
    """The served repository: a tiny wav2vec 2.0 CTC checkpoint whose weights (about 13 MB) span
    more than one of huggingface_hub's 10 MB pieces, plus files bench must not fetch."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    out = tmp_path_factory.mktemp("checkpoint")
    config = Wav2Vec2Config(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                            conv_dim=(64, 64), conv_kernel=(40, 20), conv_stride=(16, 20), num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=4, feat_extract_norm="layer", do_stable_layer_norm=True,
                            vocab_size=12)
    Wav2Vec2ForCTC(config).save_pretrained(out)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(out)
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert set(files) >= {"config.json", "model.safetensors", "preprocessor_config.json"}
    assert len(files["model.safetensors"]) > HUB_CHUNK + 1_000_000
    files["pytorch_model.bin"] = b"another format of the same weights" * 1000  # must not be fetched
    files["README.md"] = b"# a tiny test model\n"
    return files


class Hub:
    """The loopback hub: serves ``files`` under REPO_ID at COMMIT; can drop, stall or corrupt."""

    LFS = (".safetensors", ".bin")

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Range header)
        self.drop_after: int | None = None  # close the connection after this many bytes (once)
        self.stall_after: int | None = None  # send this many bytes, then wait for `release`
        self.corrupt: set[str] = set()
        self.release = threading.Event()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                hub.requests.append((self.command, self.path, self.headers.get("Range", "")))
                path = self.path.split("?")[0]
                if path in (f"/api/models/{REPO_ID}", f"/api/models/{REPO_ID}/revision/main"):
                    payload = json.dumps(hub.info()).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if body:
                        self.wfile.write(payload)
                    return
                prefix = f"/{REPO_ID}/resolve/"
                revision, _, name = path[len(prefix):].partition("/") if path.startswith(prefix) else ("", "", "")
                if name not in hub.files or revision not in (COMMIT, "main"):
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = hub.files[name]
                if name in hub.corrupt:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                start = 0
                ranged = self.headers.get("Range", "")
                if ranged.startswith("bytes="):
                    start = int(ranged[len("bytes="):].split("-")[0])
                self.send_response(206 if start else 200)
                self.send_header("ETag", f'"{hub.etag(name)}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if not body:
                    return
                part = data[start:]
                cut = hub.drop_after if hub.drop_after is not None else hub.stall_after
                if cut is not None and name == "model.safetensors" and start < cut:
                    self.wfile.write(part[:cut - start])
                    self.wfile.flush()
                    if hub.drop_after is not None:
                        hub.drop_after = None  # once: the retry gets the rest
                        self.close_connection = True
                        return
                    hub.release.wait(60)
                    return
                self.wfile.write(part)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def etag(self, name: str) -> str:
        data = self.files[name]
        return hashlib.sha256(data).hexdigest() if name.endswith(self.LFS) else _git_blob_id(data)

    def info(self) -> dict:
        siblings = []
        for name, data in sorted(self.files.items()):
            entry = {"rfilename": name, "size": len(data), "blobId": _git_blob_id(data)}
            if name.endswith(self.LFS):
                entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            siblings.append(entry)
        return {"id": REPO_ID, "modelId": REPO_ID, "sha": COMMIT, "private": False, "siblings": siblings}

    def file_gets(self, name: str) -> list[str]:
        """The Range header of every GET of ``name``."""
        return [r for m, p, r in self.requests if m == "GET" and p.endswith(f"/resolve/{COMMIT}/{name}")]


@pytest.fixture()
def hub(checkpoint):
    server = Hub(checkpoint)
    server.thread.start()
    yield server
    server.release.set()
    server.server.shutdown()
    server.server.server_close()


def _env(hub: Hub | None, hf_home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(HF_HOME=str(hf_home), HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1",
               PYTHONPATH=str(REPO))
    if hub is not None:
        env["HF_ENDPOINT"] = hub.url
    env.update(extra)
    return env


BENCH = [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())"]


def _bench(args: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    done = subprocess.run(BENCH + args, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    return done.returncode, done.stdout + done.stderr


def _storage(hf_home: Path) -> Path:
    return hf_home / "hub" / f"models--{REPO_ID.replace('/', '--')}"


def _sizes(checkpoint: dict[str, bytes]) -> dict[str, int]:
    return {name: len(data) for name, data in checkpoint.items()}


# --------------------------------------------------------------------------- --dry-run
def test_dry_run_lists_the_files_a_model_needs_with_sizes_and_fetches_nothing(hub, checkpoint, tmp_path):
    from harness.run.download import human_bytes

    code, out = _bench(["download", "--models", f"hf:{REPO_ID}", "--dry-run"], _env(hub, tmp_path / "hf"))
    assert code == 0, out
    listed = {line.split()[1]: line for line in out.splitlines() if line.startswith(REPO_ID)}
    assert set(listed) == {"config.json", "preprocessor_config.json", "model.safetensors"}  # one weights format
    for name, line in listed.items():
        assert human_bytes(len(checkpoint[name])) in line and "to fetch" in line
    total = sum(len(checkpoint[n]) for n in listed)
    assert f"1 hub repositories, 3 files, {human_bytes(total)} in all, {human_bytes(total)} to fetch into " \
           f"{tmp_path / 'hf' / 'hub'}" in out
    assert not _storage(tmp_path / "hf").exists()  # nothing written
    assert not hub.file_gets("model.safetensors")  # nothing fetched, only the file list


# --------------------------------------------------------------------------- fetching
def _check_cache(hf_home: Path, checkpoint: dict[str, bytes]) -> None:
    snapshot = _storage(hf_home) / "snapshots" / COMMIT
    assert sorted(p.name for p in snapshot.iterdir()) == ["config.json", "model.safetensors",
                                                         "preprocessor_config.json"]
    for p in snapshot.iterdir():
        assert p.read_bytes() == checkpoint[p.name]
    assert (_storage(hf_home) / "refs" / "main").read_text() == COMMIT
    assert not list((_storage(hf_home) / "blobs").glob("*.bench-partial"))


def test_a_dropped_connection_is_continued_with_a_range_request(hub, checkpoint, tmp_path):
    hub.drop_after = HUB_CHUNK + 500_000
    code, out = _bench(["download", "--models", f"hf:{REPO_ID}"], _env(hub, tmp_path / "hf"))
    assert code == 0, out
    # huggingface_hub had written one 10 MB piece when the connection dropped: it asks for the rest only
    assert hub.file_gets("model.safetensors") == ["", f"bytes={HUB_CHUNK}-"]
    _check_cache(tmp_path / "hf", checkpoint)
    assert "fetched 3 file(s)" in out and "0 problem(s)" in out


@pytest.mark.slow
def test_a_killed_download_continues_where_it_stopped(hub, checkpoint, tmp_path):
    hub.stall_after = HUB_CHUNK + 500_000  # the weights stop coming after 10.5 MB
    env = _env(hub, tmp_path / "hf")
    child = subprocess.Popen(BENCH + ["download", "--models", f"hf:{REPO_ID}"], env=env, cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = _storage(tmp_path / "hf") / "blobs" / (hashlib.sha256(checkpoint["model.safetensors"]).hexdigest()
                                                    + ".bench-partial")
    deadline = time.monotonic() + 90
    while not (partial.exists() and partial.stat().st_size >= HUB_CHUNK) and time.monotonic() < deadline:
        assert child.poll() is None, "the download ended before it was killed"
        time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert partial.stat().st_size == HUB_CHUNK
    hub.release.set()
    hub.stall_after = None

    code, out = _bench(["download", "--models", f"hf:{REPO_ID}"], env)
    assert code == 0, out
    assert hub.file_gets("model.safetensors")[-1] == f"bytes={HUB_CHUNK}-"  # only the rest was asked for
    assert "continuing at 10.5 MB" in out and "(1 continued from a partial download)" in out
    _check_cache(tmp_path / "hf", checkpoint)

    # a second run fetches nothing: every file is there and verified
    before = len(hub.file_gets("model.safetensors"))
    code, out = _bench(["download", "--models", f"hf:{REPO_ID}"], env)
    assert code == 0 and len(hub.file_gets("model.safetensors")) == before
    assert "fetched 0 file(s)" in out and "3 already present and verified" in out


@pytest.mark.slow
def test_a_corrupt_transfer_is_detected_and_a_damaged_cache_entry_is_fetched_again(hub, checkpoint, tmp_path):
    env = _env(hub, tmp_path / "hf")
    hub.corrupt = {"model.safetensors"}  # same size, one byte changed
    code, out = _bench(["download", "--models", f"hf:{REPO_ID}"], env)
    assert code == 1
    assert f"problem: the downloaded file is corrupt (SHA-256" in out and f"{REPO_ID}/model.safetensors" in out
    blobs = _storage(tmp_path / "hf") / "blobs"
    assert not (blobs / hashlib.sha256(checkpoint["model.safetensors"]).hexdigest()).exists()
    assert not list(blobs.glob("*.bench-partial"))  # the bad bytes are gone, not continued later
    assert not (_storage(tmp_path / "hf") / "snapshots" / COMMIT / "model.safetensors").exists()

    hub.corrupt = set()
    code, out = _bench(["download", "--models", f"hf:{REPO_ID}"], env)
    assert code == 0, out
    _check_cache(tmp_path / "hf", checkpoint)

    config = _storage(tmp_path / "hf") / "blobs" / _git_blob_id(checkpoint["config.json"])
    config.write_bytes(config.read_bytes().replace(b"{", b"[", 1))  # damaged on disk afterwards
    code, out = _bench(["download", "--models", f"hf:{REPO_ID}"], env)
    assert code == 0, out
    assert "config.json: the cached copy is damaged (git blob id" in out and "fetched 1 file(s)" in out
    _check_cache(tmp_path / "hf", checkpoint)


@pytest.mark.slow
def test_a_run_with_hf_hub_offline_uses_the_downloaded_checkpoint(hub, checkpoint, tmp_path, cache_dir):
    hf_home = tmp_path / "hf"
    code, out = _bench(["download", "--models", f"hf:{REPO_ID}"], _env(hub, hf_home))
    assert code == 0, out
    hub.server.shutdown()  # the compute node: no hub at all
    (tmp_path / "bench.toml").write_text(SMALL_TOML)
    env = _env(None, hf_home, HF_HUB_OFFLINE="1", BENCH_CACHE_DIR=str(cache_dir))
    args = ["run", "--config", str(tmp_path / "bench.toml"), "--models", f"hf:{REPO_ID}", "--langs", "de",
            "--seeds", "1", "--set", "train.steps=2", "--no-progress", "--store", str(tmp_path / "r.sqlite")]
    code, out = _bench(args, env, timeout=300)
    assert code == 0, out
    assert "1 cells computed" in out
    from harness.store.results import ResultStore

    with ResultStore(tmp_path / "r.sqlite", readonly=True) as store:
        (cell,) = store.cells()
    assert cell.model == f"hf:{REPO_ID}" and cell.record["train"]["updates"] == 2
    # and without the download, the same run stops before any cell, saying what to do
    code, out = _bench(args[:-2] + ["--store", str(tmp_path / "other.sqlite")],
                       _env(None, tmp_path / "empty-hf", HF_HUB_OFFLINE="1", BENCH_CACHE_DIR=str(cache_dir)))
    assert code == 2 and "bench download" in out and "cells computed" not in out


# --------------------------------------------------------------------------- missing inputs, once
def test_the_whole_study_offline_says_what_is_missing_once_in_a_few_lines(bench, small_config, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv("BENCH_COMMON_VOICE", raising=False)
    monkeypatch.chdir(tmp_path)
    code, out, err = bench("run", "--config", str(small_config), "--models", "study", "--datasets",
                           "synthetic,common_voice", "--langs", "study", "--seeds", "1")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) <= 15, err
    models = [line for line in lines if "hub checkpoint not in the Hugging Face cache" in line]
    assert len(models) == 1 and "(15): wav2vec2, r-wav2vec2, hubert" in models[0]  # every name, once
    assert "HF_HUB_OFFLINE is set" in models[0]
    data = [line for line in lines if "has no data source configured" in line]
    assert len(data) == 1 and "(18): common_voice:en, common_voice:de" in data[0]
    assert err.count("bench download") == 2  # the models' fix and the data's fix, each said once
    assert err.count("hint:") == 1 and "--keep-going" in err
    assert "no-pretraining" not in err  # the baseline needs no hub


def test_models_all_is_every_registered_model_and_groups_are_listed(bench):
    from harness.plugins import process_registry

    code, out, _ = bench("list", "--models")
    assert code == 0
    registry = process_registry()
    study = registry.groups["study"].spec.members
    assert len(study) == 16 and "no-pretraining" in study
    tiny = registry.groups["tiny"].spec.members  # from two plugins: random-weight and pre-trained here
    assert {"tiny-wav2vec2", "tiny-hubert", "tiny-phone-es", "tiny-ssl-multi"} <= set(tiny)
    assert all(name in registry.models for name in tiny)
    for group in ("study", "tiny", "english", "voxpopuli"):
        assert f"\n{group} " in out
    assert f"\nall " in out and f"({len(registry.models)} models)" in out


def test_langs_groups_select_the_study_languages_a_dataset_has(bench, small_config):
    code, out, err = bench("run", "--config", str(small_config), "--langs", "study", "--dry-run")
    assert code == 0, err
    from harness.languages import STUDY_LANGUAGES
    from harness.plugins import process_registry

    offered = process_registry().datasets["synthetic"].spec.languages
    expected = [c for c in STUDY_LANGUAGES if c in offered]
    assert f"{2 * len(expected)} cells" in out  # two models, one seed
    code, out, err = bench("list", "--languages")
    assert "--langs groups: all: every language the dataset offers; study: the study's 18" in out


def test_common_voice_download_prints_the_manual_steps(bench, monkeypatch):
    monkeypatch.delenv("BENCH_COMMON_VOICE", raising=False)
    code, out, err = bench("download", "--models", "tiny-wav2vec2", "--datasets", "common_voice", "--langs",
                           "de,sv-SE", "--dry-run")
    assert code == 0, err
    assert "Common Voice (Mozilla Data Collective) cannot be downloaded by a program (needed by " \
           "common_voice:de, common_voice:sv-SE)" in out
    assert "datacollective.mozillafoundation.org" in out and "Accept the dataset's terms" in out
    assert "BENCH_COMMON_VOICE=" in out


def test_nothing_to_download_for_models_made_here(bench):
    code, out, _ = bench("download", "--models", "tiny", "--langs", "de", "--dry-run")
    assert code == 0 and "nothing to download" in out


# --------------------------------------------------------------------------- third-party plugins
THIRD_PARTY = '''
from pathlib import Path
from harness.api import DatasetSpec, DatasetSplits, DownloadItem, ModelGroup, ModelSpec
from harness.hookspecs import hookimpl

FETCHED = Path(__file__).with_name("fetched.txt")


def fetch():
    FETCHED.write_text("weights")


def model_items(options):
    return [DownloadItem(kind="call", label="outside-weights", fetch=fetch, present=FETCHED.exists,
                         destination=str(FETCHED))]


def data_items(request):
    return [DownloadItem(kind="manual", label="outside corpus", steps=("Ask the corpus owner for access.",
                                                                       f"Unpack it for {request.language}."))]


@hookimpl
def bench_register_models(register):
    register(ModelSpec("outside-model", build=None, downloads=model_items))
    register.group(ModelGroup("tiny", ("outside-model",), "tiny models"))


@hookimpl
def bench_register_datasets(register):
    register(DatasetSpec("outside-data", ("de", "fr"), load=None, downloads=data_items))
'''


def test_a_third_party_plugin_says_what_to_fetch_through_the_api(bench, tmp_path, monkeypatch):
    from conftest import install_fake_distribution

    site = install_fake_distribution(tmp_path, monkeypatch, "outside_bench", THIRD_PARTY, "outside-bench", "outside")
    code, out, err = bench("download", "--models", "outside-model", "--datasets", "outside-data", "--langs", "all",
                           "--dry-run")
    assert code == 0, err
    assert "outside-weights" in out and "to fetch" in out and not (site / "fetched.txt").exists()
    assert "outside corpus cannot be downloaded by a program (needed by outside-data:de, outside-data:fr)" in out
    assert "1. Ask the corpus owner for access." in out

    code, out, err = bench("download", "--models", "outside-model", "--datasets", "outside-data", "--langs", "de")
    assert code == 0, err
    assert (site / "fetched.txt").read_text() == "weights" and "fetched 1 file(s)" in out
    code, out, err = bench("download", "--models", "outside-model", "--datasets", "outside-data", "--langs", "de",
                           "--dry-run")
    assert "present" in out

    from harness.plugins import process_registry  # a group two plugins register holds both's members
    tiny = process_registry().groups["tiny"].spec
    assert {"outside-model", "tiny-wav2vec2", "tiny-phone-es"} <= set(tiny.members)
    assert all(name in process_registry().models for name in tiny.members)


def test_download_refuses_to_ask_an_offline_hub(bench):
    code, out, err = bench("download", "--models", "hf:someone/some-model", "--dry-run")  # tests run HF_HUB_OFFLINE=1
    assert code == 2
    assert "error: HF_HUB_OFFLINE is set, so the hub cannot be asked what to download" in err
    assert "without HF_HUB_OFFLINE" in err


def test_only_one_format_of_weights_is_chosen():
    from harness.run.download import select_files
    from plugins.models.kit import hf_download_items

    (item,) = hf_download_items("org/model")
    both = ["config.json", "preprocessor_config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5",
            "flax_model.msgpack", "README.md", "vocab.json"]
    assert select_files(both, item) == ["config.json", "preprocessor_config.json", "model.safetensors"]
    legacy = ["config.json", "pytorch_model.bin", "tf_model.h5"]
    assert select_files(legacy, item) == ["config.json", "pytorch_model.bin"]
    sharded = ["config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
               "model-00002-of-00002.safetensors", "pytorch_model-00001-of-00002.bin"]
    assert select_files(sharded, item) == sharded[:4]
    assert hf_download_items("/a/local/checkpoint") == []  # nothing to fetch for a directory


def test_an_unreachable_hub_is_one_problem_for_every_model(tmp_path):
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = _env(None, tmp_path / "hf", HF_ENDPOINT=f"http://127.0.0.1:{port}")
    code, out = _bench(["download", "--models", "hf:org/one,hf:org/two,hf:org/three", "--dry-run"], env)
    assert code == 1
    problems = [line for line in out.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1 and problems[0].endswith(": org/one, org/two, org/three")
    assert "cannot ask the hub (ConnectError" in problems[0]
    assert out.count("hint: run `bench download` where") == 1
