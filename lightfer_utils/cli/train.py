"""`lightfer train`: train or resume a model; its options are TrainConfig's fields, with
TrainConfig's defaults shown."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from lightfer_utils.cli.common import command, json_object, labels_parent
from lightfer_utils.training.config import PRECISIONS, Augmentation, TrainConfig

# TrainConfig's scalar settings, each an option of its own name (learning_rate keeps --lr as an alias)
SETTING_HELP = {
    "epochs": "epochs to train",
    "batch_size": "faces per step (per replica)",
    "learning_rate": "Adam's peak learning rate, after a linear warm-up, before the cosine decay",
    "warmup_epochs": "epochs of linear learning-rate warm-up",
    "min_learning_rate": "where the cosine decay ends",
    "label_smoothing": "label smoothing of the cross-entropy",
    "patience": "epochs without a better PublicTest accuracy before stopping (0: never stop early)",
    "seed": "seed of the initial weights and of every augmentation draw",
    "distill_alpha": "weight of the labels against the teacher",
    "distill_temperature": "softening temperature of distillation",
    "weight_average_decay": "keep an exponential moving average of the weights with this decay (e.g. 0.999); PublicTest "
                            "scores it and best_weights.h5 keeps it (0: off)",
    "precision": "mixed_bfloat16: layers compute in bfloat16, weights stay float32; faster on CPUs with avx512_bf16 or "
                 "amx_bf16, slower on other AVX-512 CPUs, refused on AVX2-only ones (`lightfer bench training RUN` measures "
                 "both). With --resume: this session's precision (a mixed_bfloat16 run continues in float32 by itself on "
                 "a CPU without native bfloat16)",
}

def _train(args: argparse.Namespace) -> int:
    from lightfer_utils.cli.common import load_labelled
    from lightfer_utils.data import stratified_subset
    from lightfer_utils.training.config import load_config
    from lightfer_utils.training.progress import BatchProgress
    from lightfer_utils.training.train import train
    from lightfer_utils.training.trainingdir import TrainingDir

    if not 0 < args.subset <= 1:  # also refuses NaN
        raise ValueError(f"--subset must be a fraction in (0, 1], got {args.subset}")
    out = Path(args.out)
    given = vars(args)  # settings left out are not in the namespace (their options default to SUPPRESS)
    if args.resume:
        if not TrainingDir(out).config.is_file():
            raise FileNotFoundError(f"--resume: {out} holds no training run (no config.json)")
        config = load_config(out)
        ignored = [f"--{name.replace('_', '-')}" for name in SETTING_HELP if name in given and name != "precision"]
        if ignored:
            raise ValueError(f"--resume continues with the settings in {TrainingDir(out).config}; {', '.join(ignored)} "
                             "cannot change them (only --precision, this session's compute precision, can)")
    else:
        augmentation = Augmentation().changed({**json_object(args.augmentation, "--augmentation"),
                                              "erase_probability": args.erase_probability}).as_dict()
        config = TrainConfig(model=args.model, model_config=json_object(args.model_config, "--model-config"),
                             class_weights=args.class_weights, augmentation=augmentation, teacher=",".join(args.teacher),
                             teacher_flip=args.teacher_flip, teacher_offline=args.teacher_offline,
                             init_from=args.init_from, **{name: given[name] for name in SETTING_HELP if name in given})
    data = load_labelled(args)
    if args.subset < 1:
        data = stratified_subset(data, args.subset, seed=config.seed)
    train(config, data.split("Training"), data.split("PublicTest"), out,
          precision=given.get("precision") if args.resume else None, live=args.live, callbacks=[BatchProgress()])
    print(f"best weights: {TrainingDir(out).best_weights}; ship them with: lightfer maintain ship {out} --name NAME")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    fit = command(commands, "train", "train a model, or resume a training directory",
                  ("lightfer train --out runs/mine --model light_fer_net --data /path/to/fer2013",
                   "lightfer train --out runs/mine --resume --data /path/to/fer2013   # continue it",
                   "lightfer train --out runs/small --model mini_xception --epochs 150 --patience 40 --data PATH",
                   "lightfer train --out models/xception/training --live xception --model xception --batch-size 128 "
                   "--epochs 40 --precision mixed_bfloat16 --data PATH"),
                  _train, tensorflow=True, parents=(labels_parent(),))
    fit.add_argument("--out", required=True, help="training directory; the same config there resumes it")
    fit.add_argument("--resume", action="store_true", help="continue the run in --out with its saved config")
    fit.add_argument("--model", default=TrainConfig.model, help="a builder of training.models")
    fit.add_argument("--model-config", default="{}", help="JSON keyword arguments of the model builder")
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    for name, text in SETTING_HELP.items():
        flags = [f"--{name.replace('_', '-')}"] + (["--lr"] if name == "learning_rate" else [])
        kind = type(defaults[name])
        extra = {"choices": PRECISIONS} if name == "precision" else {"type": kind}
        fit.add_argument(*flags, dest=name, default=argparse.SUPPRESS, help=f"{text} (default: {defaults[name]})", **extra)
    fit.add_argument("--live", default="", metavar="NAME",
                     help="for models too large to commit: train in $LIGHTFER_CACHE/live/NAME (checkpoint with "
                     "optimizer state, best weights) and keep only the record in --out (config, state, history, "
                     "and the float16 snapshot `lightfer maintain snapshot` writes)")
    fit.add_argument("--class-weights", action="store_true", help="weigh each class by its inverse frequency")
    fit.add_argument("--erase-probability", type=float, default=0.0, help="random erasing: share of faces with a noise patch")
    fit.add_argument("--augmentation", default="{}", help="JSON settings of the augmentation that differ from the defaults "
                     f"({', '.join(f'{k}={v}' for k, v in Augmentation().as_dict().items())}), "
                     "e.g. '{\"max_rotation_deg\": 0, \"max_shift\": 0}'")
    fit.add_argument("--teacher", nargs="+", default=[], help="trained model(s) (.keras or training directory; "
                     "relative: to the project root) to distil from; several teach by their mean probability")
    fit.add_argument("--teacher-flip", action="store_true", help="the teacher also sees the mirrored face (averaged)")
    fit.add_argument("--teacher-offline", action="store_true", help="the teacher's probabilities on the un-augmented "
                     "Training faces, computed once and mixed into the targets: no teacher passes per batch")
    fit.add_argument("--init-from", default="", help="trained model of the same architecture whose weights start the "
                     "run (fine-tuning)")
    fit.add_argument("--subset", type=float, default=1.0, help="stratified fraction of the data (smoke runs)")
