"""Train RecBole's SASRec on one leave-last-out split and rank each user's test item (run in the peer venv).

Called by benchmarks/peer_sasrec.py with the interactions it wrote (``<dir>/ml100k/ml100k.inter``, each
user's events on strictly increasing times, so RecBole's split is the same one as ours) and a JSON of each
user's training items. RecBole's own "LS" split holds each user's last event out as test and the one before as
validation, trains with cross-entropy over the catalog and stops on validation NDCG@10.

RecBole's full ranking for sequential models does not mask what the user has seen; our protocol does (the
catalog's films are rated once), so the test rank is taken here with the user's training items masked.
Writes {"ranks": {user: rank of the test item, 0 = first}, "targets": {user: test item}, "recbole_test": RecBole's
own unmasked figures, "seconds": ..., "best_epoch": ...}.
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import numpy as np
import torch

# RecBole 1.2.1 stores its checkpoint with a pickled config; torch >= 2.6 loads weights only by default
torch.load = functools.partial(torch.load, weights_only=False)

from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.model.sequential_recommender import SASRec  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402
from recbole.utils import init_logger, init_seed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--history", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    t0 = time.perf_counter()
    config = Config(model="SASRec", dataset="ml100k", config_dict={
        "data_path": args.data, "checkpoint_dir": f"{args.data}/saved", "seed": args.seed,
        "reproducibility": True, "device": "cpu", "use_gpu": False, "show_progress": False,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 50, "loss_type": "CE", "train_neg_sample_args": None,
        "epochs": args.epochs, "stopping_step": 10, "eval_step": 1,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
        "metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10",
        "log_wandb": False, "save_dataset": False, "save_dataloaders": False})
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)  # RecBole's own log (each epoch's time and validation) on stdout
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = SASRec(config, train_data.dataset).to("cpu")
    trainer = Trainer(config, model)
    best_valid, _ = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    recbole_test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)

    history = json.loads(open(args.history).read())
    uid, iid = dataset.uid_field, dataset.iid_field
    ranks, targets = {}, {}
    model.eval()
    with torch.no_grad():
        for batch in test_data:
            inter = batch[0]
            scores = model.full_sort_predict(inter).view(len(inter), -1).numpy().copy()
            scores[:, 0] = -np.inf  # RecBole's padding item
            users = dataset.id2token(uid, inter[uid].numpy())
            target = inter[iid].numpy()
            for row, user in enumerate(users):
                seen = dataset.token2id(iid, history[str(user)])
                t = scores[row, target[row]]
                scores[row, seen] = -np.inf
                ranks[str(user)] = int((scores[row] > t).sum())
                targets[str(user)] = str(dataset.id2token(iid, target[row]))
    best_epoch = int(torch.load(trainer.saved_model_file, map_location="cpu")["epoch"]) + 1
    json.dump({"ranks": ranks, "targets": targets, "recbole_test": {k: float(v) for k, v in recbole_test.items()},
               "recbole_valid": {k: float(v) for k, v in best_valid.items()} if isinstance(best_valid, dict)
               else float(best_valid), "seconds": time.perf_counter() - t0, "best_epoch": best_epoch},
              open(args.out, "w"))


if __name__ == "__main__":
    main()
