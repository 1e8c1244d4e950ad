"""The command line: ``python -m experiments {train,check,run,worker,sweep,report,bench}``."""

from __future__ import annotations

import argparse
import json
import sys

from experiments.cli_values import parse_sets


def _train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train and test one configuration, print one JSON result row",
        description="Train one model on one dataset and print its result as one JSON row.",
    )
    p.add_argument("--model", required=True, help="timm model name, e.g. deit_micro or localvit_micro")
    p.add_argument(
        "--set",
        dest="sets",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="overrides: a bare key is a model toggle (dwconv=false, layers=low); "
        "data.KEY / train.KEY set data and recipe fields (train.lr=1e-3, data.subset=5000)",
    )
    p.add_argument(
        "--data",
        default="fashion_mnist",
        help="dataset: fashion_mnist (default), cifar10, cifar100, imagefolder, synthetic",
    )
    p.add_argument("--data-root", default=None, help="where the dataset lives (else the usual places)")
    p.add_argument("--subset", type=int, default=None, help="training images, balanced over classes")
    p.add_argument("--img-size", type=int, default=None, help="resize inputs to this size")
    p.add_argument("--channels", type=int, default=None, choices=(1, 3), help="convert to 1 or 3 channels")
    p.add_argument("--batch-size", type=int, default=None, help="training batch size (default 128)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 2e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, order and augmentation")
    p.add_argument("--out", default=None, help="run directory for checkpoints (resumed if present)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def cmd_train(args) -> int:
    from experiments.train import train_run

    sets = parse_sets(args.sets)
    data = {"name": args.data, **sets["data"]}
    for key, value in (
        ("root", args.data_root),
        ("subset", args.subset),
        ("img_size", args.img_size),
        ("channels", args.channels),
        ("batch_size", args.batch_size),
    ):
        if value is not None:
            data[key] = value
    train = {"epochs": args.epochs, **sets["train"]}
    if args.lr is not None:
        train["lr"] = args.lr
    result = train_run(
        {"name": args.model, **sets["model"]},
        data,
        train,
        seed=args.seed,
        workdir=args.out,
        progress=not args.no_progress,
    )
    result.pop("epochs")
    row = {"model": args.model, **{f"model.{k}": v for k, v in sets["model"].items()}, "seed": args.seed}
    print(json.dumps({**row, **result}, default=str))
    return 0 if result["status"] == "ok" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    args = parser.parse_args(argv)
    return {"train": cmd_train}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
