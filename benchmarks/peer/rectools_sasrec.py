"""Train RecTools' SASRec on one leave-last-out split and rank each user's test item (run in the peer venv).

Called by benchmarks/peer_sasrec.py with the training events it wrote (``<dir>/train.csv``: user, item, time =
each event's rank in our order) and each user's test item (``<dir>/test.json``). RecTools' SASRecModel as
shipped (2 blocks, 4 heads, 256 wide, sessions of 100, softmax loss over the catalog, lr 1e-3, batches of 128)
trains on the shifted sequence of every training history. Its epochs are chosen the way RecTools documents:
each user's last training event is a validation target (``leave_one_out_mask``), Lightning stops when the
validation loss has not fallen for ``--patience`` epochs, and the best epoch's weights are loaded back.

Each user's ranking is over the whole catalog with their training items filtered (``filter_viewed``), the same
masking as ours; a test item RecTools never saw in training cannot be recommended and ranks last.
Writes {"ranks": {user: rank of the test item, 0 = first}, "seconds": ..., "best_epoch": ..., "epochs_run": ...}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import pandas as pd
import torch
from pytorch_lightning import Trainer, seed_everything
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from rectools import Columns
from rectools.dataset import Dataset
from rectools.models import SASRecModel
from rectools.models.nn.transformers.utils import leave_one_out_mask


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--n-items", type=int, required=True, help="the catalog's size (a rank past every item)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    t0 = time.perf_counter()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train = pd.read_csv(f"{args.data}/train.csv", dtype={"user": str, "item": str})
    test = json.loads(open(f"{args.data}/test.json").read())
    events = pd.DataFrame({Columns.User: train["user"], Columns.Item: train["item"], Columns.Weight: 1.0,
                           Columns.Datetime: pd.to_datetime(train["time"], unit="s")})
    dataset = Dataset.construct(events)
    checkpoints = tempfile.mkdtemp()
    def trainer() -> Trainer:
        return Trainer(max_epochs=args.epochs, accelerator="cpu", deterministic=True, enable_progress_bar=False,
                       logger=False, enable_model_summary=False, default_root_dir=checkpoints,
                       callbacks=[EarlyStopping(monitor="val_loss", mode="min", patience=args.patience),
                                  ModelCheckpoint(dirpath=checkpoints, monitor="val_loss", mode="min", save_top_k=1)])

    seed_everything(args.seed, workers=True)
    model = SASRecModel(deterministic=True, get_val_mask_func=leave_one_out_mask, get_trainer_func=trainer,
                        recommend_torch_device="cpu")
    model.fit(dataset)
    epochs_run = int(model.fit_trainer.current_epoch)
    path = model.fit_trainer.checkpoint_callback.best_model_path  # RecTools fits a copy of the trainer
    best_epoch = int(torch.load(path, weights_only=False)["epoch"]) + 1
    model.load_weights_from_checkpoint(path)

    users = [u for u in test if u in set(train["user"])]
    n_known = dataset.item_id_map.size
    recos = model.recommend(users=users, dataset=dataset, k=n_known, filter_viewed=True)
    recos = recos.sort_values([Columns.User, Columns.Rank])
    ranks = {}
    for user, group in recos.groupby(Columns.User, sort=False):
        items = group[Columns.Item].astype(str).to_numpy()
        hit = np.flatnonzero(items == test[str(user)])
        ranks[str(user)] = int(hit[0]) if len(hit) else args.n_items
    for user in test:  # a user with no list (no training event) ranks the item last
        ranks.setdefault(user, args.n_items)
    json.dump({"ranks": ranks, "seconds": time.perf_counter() - t0, "best_epoch": best_epoch,
               "epochs_run": epochs_run}, open(args.out, "w"))


if __name__ == "__main__":
    main()
