"""Benchmark: the two transfer experiments of issue 15, from their configs (``mosaicrec.evaluation.transfer``).

* ``scenarios`` (src/mosaicrec/configs/kuairand_transfer.toml): a KuaiRand MMoE pre-trained on tab 1 and
  fine-tuned on 10%, 30%, 100% of each small tab, against the same model trained on that share alone (the
  baseline beside it); ratio transfer / scratch on click AUC.
* ``catalog`` (src/mosaicrec/configs/sequence_transfer.toml): content SASRec and content-kNN fitted on one
  half of ml100k-multimodal's genres rank the other half's films zero-shot, against MostPop, SASRec and
  content-kNN fitted on that half's own events, and random; ratio to MostPop on that half.

The same as ``mosaicrec evaluate <config>``; this writes to benchmarks/results/transfer-<kind>/ (results.json,
report.md and, for scenarios, transfer.png).
Usage: python benchmarks/transfer.py [--which scenarios catalog] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from mosaicrec.config import load_config
from mosaicrec.data import load_dataset
from mosaicrec.encoders import encode_content
from mosaicrec.evaluation.transfer import run_transfer, write_transfer_reports

CONFIGS = Path(__file__).resolve().parent.parent / "src" / "mosaicrec" / "configs"
RESULTS = Path(__file__).parent / "results"
WHICH = {"scenarios": "kuairand_transfer.toml", "catalog": "sequence_transfer.toml"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--which", nargs="+", choices=sorted(WHICH), default=list(WHICH))
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the config's (0 1 2)")
    args = ap.parse_args()
    console = Console()
    for kind in args.which:
        cfg = load_config(CONFIGS / WHICH[kind])
        if args.seeds:
            cfg = cfg.model_copy(update={"seeds": args.seeds})
        data = load_dataset(cfg.dataset.name)
        content = encode_content(data.items, cfg.content, console=console).content if cfg.content else None
        result = run_transfer(data, cfg.transfer, cfg.split, cfg.models, cfg.evaluation, content=content,
                              seeds=cfg.seeds, name=cfg.name, config=cfg.model_dump(mode="json"), console=console)
        report = write_transfer_reports(result, RESULTS / f"transfer-{kind}", cfg.baseline)
        console.print(report.read_text(), markup=False, highlight=False)


if __name__ == "__main__":
    main()
