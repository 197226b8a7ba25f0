"""``torchrun --nproc-per-node P -m gnnkit.distributed --shards DIR``: one rank per shard.

One machine::

    gnnkit partition --dataset cora --parts 4 --out shards/cora-4
    torchrun --nproc-per-node 4 -m gnnkit.distributed --shards shards/cora-4 --model gcn

Several machines (the shard folder readable from every one, e.g. copied or on a shared disk;
each rank reads only its own ``part-RANK.pt``), the same command on each machine::

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29400 --rdzv-id job1 -m gnnkit.distributed --shards shards/cora-8

Every user error (shards of another P or dataset, a corrupt shard, ranks running different
gnnkit code) and a lost rank (a collective that fails, or waits longer than ``--timeout``)
print one line on every rank that sees it and exit with code 2 (user error) or 1 (lost rank).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import torch
import torch.distributed as dist

from gnnkit.distributed.train import PartitionConfig, fit_partitioned
from gnnkit.errors import GnnkitError, InputError
from gnnkit.train.checkpoint import check_result_output, claim_checkpoint
from gnnkit.train.distributed import (
    MAX_TIMEOUT_S,
    init_distributed,
    local_device,
    shutdown_distributed,
)
from gnnkit.utils.io import atomic_write_json, describe_os_error

logger = logging.getLogger("gnnkit.distributed")


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m gnnkit.distributed``."""
    parser = argparse.ArgumentParser(
        prog="torchrun --nproc-per-node P -m gnnkit.distributed",
        description="Partition-parallel full-graph GCN/GAT training, one rank per shard.",
        allow_abbrev=False,  # as in `gnnkit`: an abbreviation could name another option
    )
    parser.add_argument(
        "--shards", required=True, metavar="DIR", help="`gnnkit partition`'s folder"
    )
    parser.add_argument("--dataset", help="refuse shards of another dataset")
    parser.add_argument("--model", choices=("gcn", "gat"), default="gcn")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=None, help="(default: 16 GCN, 8 GAT)")
    parser.add_argument("--heads", type=int, default=8, help="GAT's hidden heads (default: 8)")
    parser.add_argument("--dropout", type=float, default=None, help="(default: 0.5 GCN, 0.6 GAT)")
    parser.add_argument(
        "--attention-dropout",
        type=float,
        default=None,
        help="GAT's attention dropout (default: --dropout)",
    )
    parser.add_argument("--lr", type=float, default=None, help="(default: 0.01 GCN, 0.005 GAT)")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--eval-every", type=int, default=1)
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda:LOCAL_RANK per rank)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds a collective waits for the other ranks; past it a rank that died or hangs "
        "stops the job (default: 300)",
    )
    parser.add_argument("--checkpoint", metavar="PATH", help="rank 0 writes it; all ranks resume")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    parser.add_argument("--json", metavar="PATH", help="rank 0 writes the result here")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --json and start afresh over an existing --checkpoint; "
        "without it (or --resume) they are refused",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per rank")
    return parser


def _rank() -> int:
    """This process's rank: the process group's, or before it exists torchrun's ``RANK``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


#: What the collectives' errors say when a peer closed its connection or never answered.
_LOST = ("connection", "peer", "timed out", "timeout", "gloo", "nccl", "socket")


def _lost_contact(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that failed because another rank is gone."""
    text = str(exc).lower()
    return isinstance(exc, dist.DistError) or any(word in text for word in _LOST)


def _report(result: dict, json_path: str | None) -> None:
    """Rank 0 logs the best epoch and writes ``--json``; the other ranks do nothing."""
    if result["rank"] != 0:
        return
    best = result["best"]
    logger.info(
        "best epoch %s: val_acc %.4f test_acc %.4f",
        best.get("epoch"),
        best.get("val_acc", float("nan")),
        best.get("test_acc", float("nan")),
    )
    if json_path:
        atomic_write_json(json_path, result, option="--json")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one rank; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.threads is not None:
            if args.threads < 1:
                raise InputError(f"--threads must be at least 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        claim_checkpoint(args.checkpoint, resume=args.resume, overwrite=args.overwrite)
        continued = args.resume and args.checkpoint is not None and os.path.isfile(args.checkpoint)
        check_result_output(
            args.json, "--json", overwrite=args.overwrite, resume=args.resume, continued=continued
        )
        if not 0 < args.timeout <= MAX_TIMEOUT_S:  # NaN fails too
            raise InputError(
                f"--timeout must be a positive number of seconds, at most {MAX_TIMEOUT_S:g}, "
                f"got {args.timeout}"
            )
        config = PartitionConfig(
            model=args.model,
            hidden=args.hidden,
            heads=args.heads,
            dropout=args.dropout,
            attention_dropout=args.attention_dropout,
            lr=args.lr,
            weight_decay=args.weight_decay,
            epochs=args.epochs,
            eval_every=args.eval_every,
            patience=args.patience,
            seed=args.seed,
            dtype=args.dtype,
        )
        init_distributed(device=args.device, timeout_s=args.timeout)
        result = fit_partitioned(
            args.shards,
            config,
            dataset=args.dataset,
            device=local_device(args.device),
            checkpoint=args.checkpoint,
            resume=args.resume,
            progress=sys.stderr.isatty(),
        )
        _report(result, args.json)
    except GnnkitError as exc:
        print(f"gnnkit.distributed: error on rank {_rank()}: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # gloo raises plain RuntimeErrors; NCCL, DistBackendError
        if not _lost_contact(exc):
            raise
        first = str(exc).strip().splitlines()[0]
        print(
            f"gnnkit.distributed: rank {_rank()} lost contact with another rank ({first}); a "
            f"rank died or hung, so the job stops (--timeout {args.timeout:g} s)",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:  # an unreadable shard folder, a full disk under --checkpoint
        print(
            f"gnnkit.distributed: error on rank {_rank()}: {describe_os_error(exc)}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"gnnkit.distributed: interrupted on rank {_rank()}", file=sys.stderr)
        return 130
    finally:
        shutdown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
