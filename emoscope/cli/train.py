"""``emoscope train`` and ``emoscope ablate``: a recipe in, a bundle (or an ablation table) out."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from emoscope.cli.common import one_or_many
from emoscope.errors import InputError
from emoscope.progress import ConsoleSink, JsonLinesSink, Reporter, reporting


def _train_config(args: argparse.Namespace):
    """The recipe with the command line's ``--epochs`` and data options in place of its own
    (checked as the recipe's ``[data]`` is: an empty spec is a ``ConfigError``, an unknown one a
    ``DataError`` when the data loads)."""
    from emoscope.config import load_config  # (config names the losses: it imports torch)

    config = load_config(args.config)
    if args.epochs is not None:
        config = config.replace(training=replace(config.training, epochs=args.epochs))
    data = {name: one_or_many(getattr(args, name)) for name in ("train", "validation", "eval") if getattr(args, name)}
    if args.no_eval:
        data["eval"] = None
    return config.replace(data=replace(config.data, **data)) if data else config


def _cmd_train(args: argparse.Namespace) -> int:
    if args.no_eval and args.eval:
        raise InputError("give --eval SPEC or --no-eval, not both")
    if args.processes is not None:
        return launch_processes(args.processes, sys.argv[1:])
    from emoscope.distributed import current_world  # torch loads only for the commands that need it
    from emoscope.training import train  # torch and transformers load only for the commands that need them

    world = current_world()
    # Several processes (accelerate launch): the main one prints and writes events; the others are quiet.
    sinks = [ConsoleSink(print)] + ([JsonLinesSink(args.events)] if args.events else []) if world.is_main else []
    with reporting(Reporter(*sinks)):
        config = _train_config(args)
        output = Path(args.output) if args.output else Path(args.models_dir) / config.name
        train(config, output, overwrite=args.overwrite, progress=not args.quiet and world.is_main,
              log=print if world.is_main else _silent, work=Path(args.work_dir) if args.work_dir else None)
    return 0


def _silent(_: str) -> None:
    pass


def launch_command(processes: int, argv: list[str], *, port: int) -> list[str]:
    """``accelerate launch`` running ``emoscope`` with ``argv`` (less ``--processes``) in
    ``processes`` processes: one per GPU, or CPU processes (gloo) on a machine without GPUs.

    ``--multi_gpu`` is Accelerate's torchrun launcher whatever the device; its ``--cpu`` flag
    starts one process (several only through mpirun), so it is not used."""
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--processes":
            skip = True
        elif not arg.startswith("--processes="):
            rest.append(arg)
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(port), "-m", "emoscope.cli", *rest]


def launch_processes(processes: int, argv: list[str]) -> int:
    """``emoscope train --processes N``: the same command under ``accelerate launch``, N processes
    (on a CPU each gets an equal share of the cores unless OMP_NUM_THREADS says otherwise)."""
    import socket
    import subprocess

    import torch  # only to see whether there are GPUs to spread over

    if processes < 2:
        raise InputError(f"--processes must be at least 2 (without it a run is one process), got {processes}")
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise InputError("--processes starts accelerate launch itself; under accelerate launch leave it out")
    if torch.cuda.is_available() and processes > torch.cuda.device_count():
        raise InputError(f"--processes {processes}: this machine has {torch.cuda.device_count()} GPU(s)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    return subprocess.run(launch_command(processes, argv, port=port), env=env).returncode


def _cmd_ablate(args: argparse.Namespace) -> int:
    from emoscope.config import load_config  # (config names the losses: it imports torch)
    from emoscope.training.ablate import run_ablation, save_json, to_markdown, write_into  # torch: only when ablating

    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise InputError("emoscope ablate runs in one process; run it without accelerate launch")
    config = load_config(args.config)
    result = run_ablation(config, seeds=args.seeds, progress=not args.quiet,
                          work=Path(args.work_dir) if args.work_dir else None, only=args.only or ())
    command = "emoscope ablate " + shlex.join(sys.argv[2:]) if len(sys.argv) > 2 else f"emoscope ablate --config {args.config}"
    markdown = to_markdown(result, command)
    output = Path(args.output) if args.output else Path("docs") / "ablations" / f"{config.name}.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(markdown, encoding="utf-8")
    save_json(result, output.with_suffix(".json"))
    if args.into:
        write_into(Path(args.into), config.name, markdown)
    print(markdown)
    print(f"written to {output} (and {output.with_suffix('.json').name})" + (f" and {args.into}" if args.into else ""))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a model from a recipe and write a bundle")
    p.add_argument("--config", required=True, help="recipe file, e.g. training/configs/smoke.toml")
    p.add_argument("--output", help="bundle directory (default: MODELS_DIR/<recipe name>)")
    p.add_argument("--models-dir", default="models", help="where bundles go when --output is not given")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle (only once the new one is complete)")
    p.add_argument("--epochs", type=int, help="override the recipe's maximum number of epochs (stacked: stage 1's)")
    p.add_argument("--train", nargs="+", metavar="SPEC",
                   help="train on these dataset specs or labelled CSV/TSV files instead of the recipe's data.train")
    p.add_argument("--validation", nargs="+", metavar="SPEC",
                   help="validate on these (a spec, a file, or holdout:F) instead of the recipe's data.validation")
    p.add_argument("--eval", nargs="+", metavar="SPEC", help="report on these after training instead of data.eval")
    p.add_argument("--no-eval", action="store_true", help="report on no eval set, whatever the recipe says")
    p.add_argument("--events", metavar="FILE",
                   help="also write the run's progress as JSON lines to FILE (what the app's Train page reads)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (progress lines are still printed)")
    p.add_argument("--work-dir", help="stacked recipes: where stage-1 models are kept between runs "
                                      "(default: EMOSCOPE_CACHE_DIR/stack-work/<recipe>; one folder per encoder settings inside)")
    p.add_argument("--processes", type=int, metavar="N",
                   help="train in N processes under accelerate launch (one per GPU, or CPU processes): DDP "
                        "for one encoder, whole stage-1 models and stage-2 encoders spread for a stack")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("ablate", help="train and score every variant of a stacked recipe (losses, terms, stacking, thresholds)")
    p.add_argument("--config", required=True, help="stacked recipe, e.g. training/configs/brighter-arq-stack.toml")
    p.add_argument("--output", help="Markdown file (default: docs/ablations/<recipe>.md; the JSON goes next to it)")
    p.add_argument("--into", help="also put the table into this Markdown file, between ablation:<recipe> markers")
    p.add_argument("--seeds", type=int, default=1, help="meta-learner seeds per variant (scores are averaged)")
    p.add_argument("--only", action="append", metavar="VARIANT",
                   help="train only this variant (repeatable; exact name as in the table) besides the main one")
    p.add_argument("--work-dir", help="where stage-1 models are kept (default: as for train)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_ablate)
