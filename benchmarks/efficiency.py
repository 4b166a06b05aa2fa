"""How much of the machine's arithmetic a fine-tuning update uses, and where a cell's time goes.

Three measurements, printed as tables (``--json FILE`` also writes them):

1. **Peak**: the matrix-multiply rate this device reaches (fp32, and bf16 where the hardware
   has it: AVX-512 BF16/AMX on a CPU, tensor cores on a GPU), at a large square shape and at
   the shapes of a tiny model's update (frames x 192 x 768 and so on). The best of these
   rates (fp32, or bf16 when the updates run in it) is the "peak" the percentages below are
   taken against: measured here, not a data sheet's number, so it already includes what the
   BLAS library and the clock achieve.
2. **Update**: one training update (forward, backward, clipping, Adam) of everything after the
   frozen feature encoder — exactly what bench's loop does per update — for the tiny model at
   the default batch (16 s of padded audio) and for the large architecture (every model of
   the study's catalog) at ``--large-batch-seconds`` (default: 16 s on a CPU, the paper's 200 s
   on a GPU). FLOPs counted by ``harness/plan/cost.py`` and, as a check, by torch's own
   ``FlopCounterMode`` (its matrix multiplications; its count of grouped-convolution backward
   passes is too high, so the total is shown separately); the rate as a share of the peak.
3. **Breakdown** of one real default cell (tiny-phone-es on Spanish, seed 0, when that model
   is in the cache, otherwise tiny-wav2vec2), computed in this process: model build, feature
   caching, updates, evaluation (forward pass), decoding, scoring and storing.

    python benchmarks/efficiency.py                   # CPU, torch's default threads
    python benchmarks/efficiency.py --threads 1       # what one cell of the default run gets on 2 cores
    python benchmarks/efficiency.py --device cuda     # a GPU: bf16 autocast, the paper's batch

About a minute on 2 CPU cores (the large update dominates: ``--skip-large`` leaves it out).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bf16_supported(device) -> bool:
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def matmul_rate(device, dtype, m: int, k: int, n: int, seconds: float = 0.5, repeats: int = 3) -> float:
    """FLOP/s of ``(m, k) @ (k, n)``: the best of ``repeats`` runs of about ``seconds`` each
    (after as long a warm-up, so clocks and caches have settled)."""
    import torch

    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    best = 0.0
    for attempt in range(repeats + 1):
        reps, elapsed = 0, 0.0
        _sync(device)
        start = time.perf_counter()
        while elapsed < seconds:
            for _ in range(5):
                a @ b
            reps += 5
            _sync(device)
            elapsed = time.perf_counter() - start
        if attempt:  # the first run warms up
            best = max(best, 2 * m * k * n * reps / elapsed)
    return best


def measure_peak(device) -> dict:
    import torch

    dtypes = [("fp32", torch.float32)] + ([("bf16", torch.bfloat16)] if bf16_supported(device) else [])
    square = 8192 if device.type == "cuda" else 2048
    shapes = {f"square {square}": (square, square, square),
              "tiny update 800x192x768": (800, 192, 768), "tiny update 800x768x192": (800, 768, 192),
              "tiny update 800x192x192": (800, 192, 192), "large update 800x1024x4096": (800, 1024, 4096)}
    out: dict = {}
    for name, dtype in dtypes:
        out[name] = {label: matmul_rate(device, dtype, *shape) for label, shape in shapes.items()}
    return out


def build_model(arch_name: str, vocab: int = 40):
    """A random model of the architecture with the CTC head (as a cell builds it)."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    from plugins.models.hf import tiny_config
    from plugins.models.kit import HFCTCModel

    if arch_name == "tiny":
        config = tiny_config("wav2vec2", vocab_size=vocab, pad_token_id=0, ctc_loss_reduction="sum")
    else:  # the large architecture of the catalog (wav2vec 2.0 large / XLS-R 300m), no dropout or layer drop
        config = Wav2Vec2Config(
            hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
            feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True, num_conv_pos_embeddings=128,
            num_conv_pos_embedding_groups=16, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
            feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0, vocab_size=vocab, pad_token_id=0)
    return HFCTCModel(Wav2Vec2ForCTC(config))


def measure_update(arch_name: str, device, precision: str, batch_seconds: float, utterance_seconds: float,
                   updates: int, warmup: int) -> dict:
    """Seconds per update of ``arch_name`` after ``warmup`` updates, and its FLOPs."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from harness.api import frame_mask
    from harness.engine.device import autocast
    from harness.plan.cost import ARCHITECTURES

    arch = ARCHITECTURES[arch_name]
    torch.manual_seed(0)
    model = build_model(arch_name).to(device)
    for p in model.feature_encoder_parameters():
        p.requires_grad_(False)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-4, fused=device.type == "cuda")
    fps = arch.frames_per_second
    per_utterance = int(round(utterance_seconds * fps))
    batch = max(1, int(batch_seconds // utterance_seconds))
    features = torch.randn(batch, per_utterance, arch.conv_dim[-1], device=device)  # the frozen encoder's output
    lengths = torch.full((batch,), per_utterance, dtype=torch.long)
    mask = frame_mask(lengths.to(device), per_utterance)
    targets = torch.randint(1, 40, (batch * (per_utterance // 4),), device=device)
    target_lengths = torch.full((batch,), per_utterance // 4, dtype=torch.long)
    amp = autocast(device, precision)

    def update() -> None:
        with amp:
            logits = model.head(features, mask)
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)
        loss = F.ctc_loss(log_probs, targets, lengths, target_lengths, blank=0, reduction="sum", zero_infinity=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    counter = FlopCounterMode(display=False)
    with counter:
        update()
    counts = counter.get_flop_counts().get("Global", {})
    matmul = sum(v for op, v in counts.items() if str(op).split(".")[-1] in ("mm", "addmm", "bmm", "baddbmm"))
    times = []
    for i in range(warmup + updates):
        _sync(device)
        start = time.perf_counter()
        update()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    frames = batch * per_utterance
    flops = 3 * frames * arch.forward_flops_per_frame(per_utterance)
    cost_matmul = 3 * frames * (arch.forward_flops_per_frame(per_utterance)
                                - 2 * arch.hidden * (arch.hidden // arch.pos_conv_groups) * arch.pos_conv_kernel
                                - arch.layers * 2 * 2 * per_utterance * arch.hidden)
    seconds = statistics.median(times)
    return {"architecture": arch_name, "precision": precision, "batch_seconds": batch * utterance_seconds,
            "utterances": batch, "frames": frames, "seconds_per_update": seconds,
            "spread": statistics.pstdev(times) / statistics.mean(times) if len(times) > 1 else 0.0,
            "flops_cost_py": flops, "matmul_flops_cost_py": cost_matmul, "matmul_flops_torch": float(matmul),
            "all_flops_torch": float(sum(counts.values())), "flop_rate": flops / seconds}


class _Timers:
    """Adds up wall time spent in wrapped functions (by label)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, owner, name: str, label: str, device) -> None:
        original = getattr(owner, name)
        timers = self

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                _sync(device)
                timers.seconds[label] = timers.seconds.get(label, 0.0) + time.perf_counter() - start

        setattr(owner, name, timed)


def measure_breakdown(device_name: str, threads: int) -> dict:
    """One default cell computed here, its time split by stage."""
    import dataclasses

    import importlib

    evaluate_module = importlib.import_module("harness.engine.evaluate")  # the package's names shadow these modules
    setup_module = importlib.import_module("harness.engine.setup")
    from harness.engine.device import resolve_device
    from harness.plan.config import load_config
    from harness.plan.planner import plan_run
    from harness.plugins import process_registry
    from harness.run import cell as cell_module
    from harness.run.cell import CellTask
    from harness.store.results import ResultStore
    from plugins.models.pretrained import BUILT_IN, checkpoint_dir, read_manifest

    config = load_config(None)
    cached = read_manifest(checkpoint_dir(config.cache_dir / "models", BUILT_IN["tiny-phone-es"])) is not None
    model = "tiny-phone-es" if cached else "tiny-wav2vec2"
    runtime = dataclasses.replace(config.runtime, device=device_name, threads=threads, feature_store_gb=0.0)
    config = dataclasses.replace(config, models=(model,), langs=("es",), seeds=(0,), runtime=runtime)
    registry = process_registry()
    plan = plan_run(config, registry)
    planned = plan.cells[0]
    device = resolve_device(device_name)
    timers = _Timers()
    timers.wrap(setup_module.CellSetup, "build_model", "model build", device)
    timers.wrap(setup_module.CellSetup, "build_cache", "feature caching", device)
    timers.wrap(setup_module, "fit", "updates", device)
    timers.wrap(evaluate_module, "greedy_decode", "decoding (greedy, per utterance)", device)
    timers.wrap(setup_module, "evaluate", "evaluation (forward + decoding)", device)
    timers.wrap(cell_module, "score_splits", "scoring", device)
    start = time.perf_counter()
    result = cell_module.compute_cell(CellTask(config, planned.cell, planned.key))
    total = time.perf_counter() - start
    if not hasattr(result, "record"):
        raise SystemExit(f"the cell failed: {result.message}")
    with tempfile.TemporaryDirectory() as scratch:
        store_start = time.perf_counter()
        with ResultStore(Path(scratch) / "r.sqlite") as store:
            c = result.cell
            store.put(result.key, model=c.model, dataset=c.dataset, language=c.language, seed=c.seed,
                      metrics=result.metrics, record=result.record, hypotheses=result.hypotheses,
                      duration_s=result.duration_s)
        stored = time.perf_counter() - store_start
    seconds = dict(timers.seconds)
    decoding = seconds.pop("decoding (greedy, per utterance)", 0.0)
    seconds["evaluation (forward pass)"] = seconds.pop("evaluation (forward + decoding)", 0.0) - decoding
    seconds["decoding (greedy)"] = decoding
    seconds["storing"] = stored
    seconds["other (data loading, vocabulary, record)"] = total - sum(
        v for k, v in seconds.items() if k != "storing")
    return {"model": model, "threads": threads, "total_seconds": total + stored, "stages": seconds,
            "test_cer": result.metrics["test"]["cer"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                        help="of the updates (auto: fp32 on a CPU, bf16 on a GPU)")
    parser.add_argument("--large-batch-seconds", type=float, default=None,
                        help="padded audio per large update (default: 16 s on a CPU, 200 s on a GPU)")
    parser.add_argument("--updates", type=int, default=None, help="timed updates per architecture")
    parser.add_argument("--skip-large", action="store_true", help="leave out the large update (slow on a CPU)")
    parser.add_argument("--skip-breakdown", action="store_true")
    parser.add_argument("--json", default=None, help="also write every figure to this file")
    args = parser.parse_args(argv)

    import torch
    from tabulate import tabulate

    from harness.engine.device import resolve_device, resolve_precision

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    on_gpu = device.type == "cuda"
    label = torch.cuda.get_device_name(device) if on_gpu else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"device: {label}; torch {torch.__version__}\n")

    figures: dict = {"device": label, "torch": torch.__version__, "threads": torch.get_num_threads()}
    peak = measure_peak(device)
    figures["peak"] = peak
    rows = [[shape] + [f"{peak[d][shape] / 1e9:,.0f}" for d in peak] for shape in peak["fp32"]]
    print("1. matrix multiplication, GFLOP/s (best of 3)")
    print(tabulate(rows, headers=["shape"] + list(peak)))
    kind = "bf16" if precision in ("bf16", "fp16") and "bf16" in peak else "fp32"
    reference = max(peak[kind].values())
    figures["peak_used"] = {"dtype": kind, "flops": reference}
    print(f"peak used below: {reference / 1e9:,.0f} GFLOP/s ({kind}, the best rate measured above)\n")

    updates = args.updates or (20 if on_gpu else 10)
    measured = [measure_update("tiny", device, precision, 16.0, 5.0, updates, 3)]
    if not args.skip_large:
        batch = args.large_batch_seconds or (200.0 if on_gpu else 16.0)
        measured.append(measure_update("large", device, precision, batch, 5.0, updates if on_gpu else 3, 1))
    figures["updates"] = measured
    rows = []
    for m in measured:
        rows.append([m["architecture"], f"{m['batch_seconds']:.0f} s ({m['utterances']} x 5 s)", m["precision"],
                     f"{m['seconds_per_update'] * 1e3:,.1f}", f"{m['flops_cost_py'] / 1e9:,.1f}",
                     f"{m['matmul_flops_cost_py'] / 1e9:,.1f} / {m['matmul_flops_torch'] / 1e9:,.1f}",
                     f"{m['flop_rate'] / 1e9:,.0f}", f"{100 * m['flop_rate'] / reference:.0f} %"])
        m["share_of_peak"] = m["flop_rate"] / reference
    print("2. one training update (forward, backward, clipping, Adam) after the frozen feature encoder")
    print(tabulate(rows, headers=["model", "batch", "precision", "ms/update", "GFLOP (cost.py)",
                                  "matmul GFLOP (cost.py / torch)", "GFLOP/s", "of peak"]))
    print()

    if not args.skip_breakdown:
        breakdown = measure_breakdown(args.device, torch.get_num_threads())
        figures["breakdown"] = breakdown
        total = breakdown["total_seconds"]
        rows = [[stage, f"{s:.2f}", f"{100 * s / total:.0f} %"] for stage, s in breakdown["stages"].items()]
        rows.append(["total", f"{total:.2f}", "100 %"])
        print(f"3. one default cell ({breakdown['model']} / synthetic:es / seed 0, 150 updates, "
              f"{breakdown['threads']} thread(s); test CER {breakdown['test_cer']:.3f})")
        print(tabulate(rows, headers=["stage", "seconds", "share"]))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
