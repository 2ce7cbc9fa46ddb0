#!/usr/bin/env python3
"""Writes tests/data/significance/: the golden vectors of moe's paired significance tests and of its
numpy generator (tests/unit/eval/significance_test.cpp). Not run by the tests; rerun by hand with
sacrebleu==2.6.0 and numpy>=2 from PyPI on CPython 3.11:

    python3 -m venv /tmp/sb && /tmp/sb/bin/pip install sacrebleu==2.6.0 numpy
    /tmp/sb/bin/python tests/support/make_significance_vectors.py

The texts are the project's own sentences (README, ARCHITECTURE, docs/reliability.md at the time of
writing) as references, and three perturbed copies (words dropped, replaced, inserted, swapped at
different rates) as the baseline and two systems.
"""
import json, os, random, re, subprocess, sys
from pathlib import Path

import numpy as np
import sacrebleu
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests/data/significance"
OUT.mkdir(parents=True, exist_ok=True)
assert sacrebleu.__version__ == "2.6.0", sacrebleu.__version__


def write_texts():
    if (OUT / "ref.txt").exists():
        return  # the texts are fixed once written; the vectors below follow them
    random.seed(7)
    text = "".join((ROOT / p).read_text() for p in ("README.md", "ARCHITECTURE.md", "docs/reliability.md"))
    text = re.sub(r"\s+", " ", re.sub(r"`|\*|#|\|", " ", text))
    sents = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text)
             if 6 <= len(s.split()) <= 30 and "http" not in s][:120]
    vocab = sorted(set(w for s in sents for w in s.split()))

    def perturb(s, p):
        out = []
        for w in s.split():
            r = random.random()
            if r < p / 3:
                continue
            if r < 2 * p / 3:
                out.append(random.choice(vocab))
                continue
            out.append(w)
            if r > 1 - p / 6:
                out.append(random.choice(vocab))
        if random.random() < p and len(out) > 3:
            i = random.randrange(len(out) - 1)
            out[i], out[i + 1] = out[i + 1], out[i]
        return " ".join(out)

    (OUT / "ref.txt").write_text("\n".join(sents) + "\n")
    for name, p in [("base", 0.35), ("sysA", 0.30), ("sysB", 0.45)]:
        (OUT / f"{name}.txt").write_text("\n".join(perturb(s, p) for s in sents) + "\n")


def numpy_vectors():
    out = {"seed_sequence": [], "pcg64": [], "choice": [], "bools_then_choice": []}
    for seed in (12345, 0, 7, 2**32 + 5, 2**64 - 1):
        ss = np.random.SeedSequence(seed)
        out["seed_sequence"].append({"seed": str(seed), "pool": [int(x) for x in ss.pool],
                                     "state_u64": [str(int(x)) for x in ss.generate_state(4, np.uint64)]})
        bg = np.random.PCG64(seed)
        out["pcg64"].append({"seed": str(seed), "uint64": [str(int(x)) for x in bg.random_raw(8)]})
    # choice(n, size=(rows, n)): the bootstrap's indices. Large n exercise Lemire's rejection step.
    for seed, n, rows in ((12345, 1, 3), (12345, 2, 4), (12345, 7, 5), (12345, 103, 40), (7, 1000, 10),
                          (1, 3_000_000_000, 1), (2, 2**32 - 1, 1)):
        n_cols = min(n, 64)
        idx = np.random.default_rng(seed).choice(n, size=(rows, n_cols), replace=True)
        out["choice"].append({"seed": seed, "n": n, "rows": rows, "cols": n_cols,
                              "values": [int(v) for v in idx.reshape(-1)]})
    # integers(2, size, dtype=bool) then choice from the same generator: approximate randomization
    # with a confidence estimate (an odd bool count leaves half a 64-bit draw for the next call).
    for seed, rows, n, conf in ((12345, 3, 37, 2), (9, 1, 33, 1), (9, 1, 64, 1)):
        rng = np.random.default_rng(seed)
        bits = rng.integers(2, size=(rows, n), dtype=bool)
        idx = rng.choice(n, size=(conf, n), replace=True)
        out["bools_then_choice"].append({"seed": seed, "rows": rows, "n": n, "conf": conf,
                                         "bits": "".join("1" if b else "0" for b in bits.reshape(-1)),
                                         "values": [int(v) for v in idx.reshape(-1)]})
    (OUT / "numpy_generator.json").write_text(json.dumps(out, indent=1) + "\n")


def api_vectors():
    read = lambda name: [line.rstrip() for line in (OUT / name).read_text().splitlines()]
    refs = [read("ref.txt")]
    systems = [("base.txt", read("base.txt")), ("sysA.txt", read("sysA.txt")), ("sysB.txt", read("sysB.txt"))]
    cases = []
    metric_sets = {"bleu,chrf,chrf++": lambda: {"bleu": BLEU(), "chrf": CHRF(), "chrf++": CHRF(word_order=2)},
                   "bleu-lc-floor": lambda: {"bleu": BLEU(lowercase=True, smooth_method="floor")}}
    for seed, test, n, conf, metric_set in (("12345", "bs", 1000, -1, "bleu,chrf,chrf++"),
                                            ("7", "bs", 200, -1, "bleu-lc-floor"),
                                            ("12345", "ar", 10000, -1, "bleu,chrf,chrf++"),
                                            ("7", "ar", 500, 300, "bleu,chrf,chrf++"),
                                            ("7", "ar", 300, -1, "bleu-lc-floor")):
        os.environ["SACREBLEU_SEED"] = seed
        metrics = metric_sets[metric_set]()
        for m in metrics.values():
            m._ref_cache = {}
        ps = PairedTest(systems, metrics, refs, test_type=test, n_samples=n, n_ar_confidence=conf)
        sigs, scores = ps()
        table = {}
        for metric, results in scores.items():
            if metric == "System":
                continue
            table[metric] = [{k: (None if v is None else float(v)) for k, v in r.__dict__.items()} for r in results]
        cases.append({"seed": seed, "test": test, "samples": n, "ar_confidence": conf, "metrics": metric_set,
                      "signatures": {k: v.format() for k, v in sigs.items()}, "results": table})
    (OUT / "paired_api.json").write_text(json.dumps(cases, indent=1) + "\n")


def cli_outputs():
    env = dict(os.environ, SACREBLEU_SEED="12345")
    sb = [sys.executable, "-m", "sacrebleu", "ref.txt", "-i", "base.txt", "sysA.txt", "sysB.txt"]
    for name, extra in (("cli_bs.txt", ["-m", "bleu", "chrf", "--paired-bs", "-f", "text"]),
                        ("cli_ar.txt", ["-m", "bleu", "chrf", "--paired-ar", "-f", "text", "-w", "2"]),
                        ("cli_bs_bleu.json", ["-m", "bleu", "--paired-bs"]),
                        ("cli_ar.json", ["-m", "bleu", "chrf", "--chrf-word-order", "2", "--paired-ar", "--paired-ar-n", "2000"])):
        text = subprocess.run(sb + extra, cwd=OUT, env=env, check=True, capture_output=True, text=True).stdout
        (OUT / name).write_text(text)


write_texts()
numpy_vectors()
api_vectors()
cli_outputs()
print("wrote", OUT)
