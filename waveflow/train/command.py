"""``python -m waveflow train``: its arguments, the :class:`TrainConfig` they build, and its exit
codes (3: diverged, 1: a rank of the job failed, one line each under torchrun)."""

from __future__ import annotations

import argparse
import math
import sys

from ..model import get_config
from . import distributed
from .loop import train
from .options import TrainConfig, TrainingDiverged, TrainResult, positive_number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``train``, by topic, in the order ``--help`` lists them; defaults from :class:`TrainConfig`."""
    d = TrainConfig()
    _model_arguments(parser)
    _data_and_optimiser_arguments(parser, d)
    _run_arguments(parser, d)
    _evaluation_arguments(parser, d)
    _budget_arguments(parser)
    _energy_arguments(parser)
    _distributed_arguments(parser)


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model: a paper configuration and the overrides of its size."""
    parser.add_argument("--config", default="WF2", help="paper configuration WF1..WF5 to start from (WF2)")
    parser.add_argument("--res-channels", type=int, help="override r, the residual channels")
    parser.add_argument("--n-height", type=int, help="override h, the squeezed height (8, 16, 32, 64, 128)")
    parser.add_argument("--n-flows", type=int, help="override the number of flows (8)")
    parser.add_argument("--n-layers", type=int, help="override the layers per flow (8; h=8/16 only)")


def _data_and_optimiser_arguments(parser: argparse.ArgumentParser, d: TrainConfig) -> None:
    """The data, the schedule and the optimiser: what decides the batches and the optimiser's path
    (a resume must keep them)."""
    parser.add_argument("--data", default=d.data, help="LJSpeech-format folder (default: bundled ljspeech-mini)")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"total steps ({d.steps})")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=d.batch_size,
        help=f"global clips per step ({d.batch_size}); under torchrun each of the W ranks takes batch/W of them, "
        "so W must divide it. The learning rate is never rescaled with W: the same global batch gives the same "
        "averaged gradient at any W; change --lr yourself if you change the global batch",
    )
    parser.add_argument("--segment", type=int, default=d.segment, help=f"crop length in samples ({d.segment})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate ({d.lr})")
    parser.add_argument(
        "--grad-clip", type=float, default=d.grad_clip, help=f"max gradient norm, 0 = off ({d.grad_clip})"
    )
    parser.add_argument("--seed", type=int, default=d.seed, help=f"random seed ({d.seed})")


def _run_arguments(parser: argparse.ArgumentParser, d: TrainConfig) -> None:
    """The run folder, whether to resume it, and the device."""
    parser.add_argument("--out", default="", help="run folder (default build/runs/<config>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument(
        "--device",
        default=d.device,
        help="cpu, cuda, cuda:N or auto (auto); under torchrun cuda/auto give each rank cuda:<local rank> and "
        "NCCL, cpu gives gloo",
    )


def _evaluation_arguments(parser: argparse.ArgumentParser, d: TrainConfig) -> None:
    """How often the run validates, keeps checkpoints and logs."""
    parser.add_argument("--val-every", type=int, default=d.val_every, help=f"steps between validations ({d.val_every})")
    parser.add_argument("--val-clips", type=int, default=d.val_clips, help=f"validation clips ({d.val_clips})")
    parser.add_argument(
        "--val-samples",
        type=int,
        default=d.val_samples,
        help=f"samples per validation clip, 0 = whole clip ({d.val_samples})",
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=d.validation_fraction,
        help=f"share of clips held out for validation by the hash split, never trained on ({d.validation_fraction})",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=d.checkpoint_every,
        help="steps between kept periodic checkpoints, 0 = none (0)",
    )
    parser.add_argument("--log-every", type=int, default=d.log_every, help=f"steps between log lines ({d.log_every})")


def _budget_arguments(parser: argparse.ArgumentParser) -> None:
    """What stops a run before its last step, and its quality marks."""
    parser.add_argument(
        "--energy-budget",
        metavar="J",
        help="stop once training (evaluation excluded, every rank, counted across resumes) has used this many joules",
    )
    parser.add_argument(
        "--time-budget",
        metavar="S",
        help="stop once training (evaluation excluded, counted across resumes) has run this many wall seconds",
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        help="steps between quality marks: held-out NLL (bits/sample) on fixed crops of --val-samples samples of "
        "--val-clips validation clips, with the training energy so far; 0 = none (0)",
    )


def _energy_arguments(parser: argparse.ArgumentParser) -> None:
    """How the run's energy is metered and where its record goes."""
    parser.add_argument(
        "--energy-log",
        default="",
        help="CSV the run's merged energy record is appended to (default <out>/energy_log.csv; the per-device "
        "rows go to <log>_devices.csv)",
    )
    parser.add_argument("--no-energy", action="store_true", help="do not meter the run's energy")
    parser.add_argument(
        "--carbontracker",
        action="store_true",
        help="also run Carbontracker, once per node (it meters only its node's devices)",
    )
    parser.add_argument("--cpu-tdp", type=float, help="CPU TDP in W for the CPU estimate (default: table lookup)")


def _distributed_arguments(parser: argparse.ArgumentParser) -> None:
    """Distributed runs: how long a rank waits for the others."""
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=distributed.DEFAULT_TIMEOUT_S,
        help="seconds a rank waits for the others before the job fails instead of hanging; rank 0's validation "
        f"and checkpoints must fit in it ({distributed.DEFAULT_TIMEOUT_S:g})",
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build the run's :class:`TrainConfig` from CLI arguments."""
    model = get_config(args.config)
    overrides = {
        k: v
        for k, v in {
            "res_channels": args.res_channels,
            "n_height": args.n_height,
            "n_flows": args.n_flows,
            "n_layers": args.n_layers,
        }.items()
        if v is not None
    }
    if "n_height" in overrides and model.permutation == "bipartite" and overrides["n_height"] % 2:
        overrides["permutation"] = "reverse"
    model = model.replace(**overrides)
    name = args.config.upper() + "".join(f"-{k[0]}{v}" for k, v in sorted(overrides.items()) if k != "permutation")
    return TrainConfig(
        model=model,
        data=args.data,
        out=args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        segment=args.segment,
        lr=args.lr,
        grad_clip=args.grad_clip,
        seed=args.seed,
        device=args.device,
        val_every=args.val_every,
        val_clips=args.val_clips,
        val_samples=args.val_samples,
        validation_fraction=args.validation_fraction,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        name=name,
        energy_budget_j=None if args.energy_budget is None else positive_number(args.energy_budget, "--energy-budget"),
        time_budget_s=None if args.time_budget is None else positive_number(args.time_budget, "--time-budget"),
        eval_every=0 if args.eval_every is None else _eval_every(args.eval_every),
    )


def _eval_every(value: int) -> int:
    """``--eval-every``: 0 is refused on the command line (leave the option out for no marks)."""
    if value is None or value < 1:
        raise ValueError(f"--eval-every: expected a positive number of steps, got {value!r} (omit it for no marks)")
    return value


def run(args: argparse.Namespace) -> int:
    """Train from the command line; exit 3 when training diverges, 1 when a rank of the job failed.

    The first line names the world size and backend. Under torchrun only rank 0 prints: errors
    that every rank meets alike (bad options, a refused resume, divergence) once, and the failure
    of any rank as one line naming the rank and the reason (:func:`distributed.failure_line`).
    """
    info = distributed.rank_info()
    try:
        config = config_from_args(args)
        distributed.local_batch_size(config.batch_size, info.world_size)
    except (ValueError, FileNotFoundError):
        if info.is_main:
            raise  # the CLI prints it as one line
        return 2
    device = distributed.rank_device(config.device, info)  # a rank's own problem: every rank says it
    backend = distributed.backend_for(device) if info.launched else "none (single process)"
    if info.is_main:
        print(f"DDP: world size {info.world_size}, backend {backend}", flush=True)
    energy: bool | str = False if args.no_energy else (args.energy_log or True)
    prog = getattr(args, "prog", "waveflow train")
    handler = distributed.StopHandler(distributed.DistContext(info, device), prog=prog) if info.launched else None
    try:
        if handler is not None:
            handler.install()
        result = train(
            config,
            resume=args.resume,
            progress=info.is_main,
            energy=energy,
            carbontracker=args.carbontracker,
            cpu_tdp_w=args.cpu_tdp,
            dist_timeout_s=args.dist_timeout,
            stop_handler=handler,
        )
    except TrainingDiverged as exc:  # decided on the averaged loss: the same on every rank
        if info.is_main:
            print(f"{prog}: {exc}")
        return 3
    except (ValueError, FileNotFoundError):  # options and resume checks: rank 0 decides and broadcasts
        if info.is_main:
            raise
        return 2
    except (Exception, distributed.JobStopped) as exc:
        if handler is None:
            raise
        return _report_failure(handler, exc)
    finally:
        if handler is not None:
            handler.uninstall()
    if info.is_main:
        _print_result(result)
    return 0


def _print_result(result: TrainResult) -> None:
    """Rank 0's closing lines: the last step's losses and checkpoint, why the run stopped early, its
    last quality mark and its merged energy, so a run's outcome reads from the terminal alone."""
    val = "n/a" if result.final_val_nll is None else f"{result.final_val_nll:.4f} nats/sample"
    print(
        f"step {result.step}: train loss {result.final_train_loss:.4f}, validation NLL {val}; "
        f"checkpoint {result.last_checkpoint}"
    )
    if result.stopped_by not in ("steps", "should_stop"):
        print(f"stopped at step {result.step}: {result.stopped_by}")
    if result.marks:
        m = result.marks[-1]
        print(
            f"{len(result.marks)} quality mark(s); last: {m.get('heldout_nll_bits', math.nan):.4f} bits/sample "
            f"held-out after {m['energy_j']:.4g} J ({m['energy_method']}) and {m['wall_s']:.1f} s of training"
        )
    if result.energy is not None:
        e = result.energy
        missing = f", missing ranks {e.missing_ranks}" if e.missing_ranks else ""
        print(
            f"energy: {e.energy_j:.1f} J over {sum(d.counted for d in e.devices)} device(s) of {e.world_size} rank(s) "
            f"on {e.nodes} node(s) ({e.record.methods_label()}){missing}"
        )


def _report_failure(handler: distributed.StopHandler, exc: BaseException) -> int:
    """Leave this rank's reason for rank 0, which prints the job's one-line reason; exit code 1.

    A rank other than 0 prints its own error too (one line, prefixed with its rank) when it is the
    cause rather than a casualty, so a node's own log says what went wrong there.
    """
    handler.quiet()  # torchrun's SIGTERM must not cut the report short
    ctx = handler.ctx
    cause = not distributed.is_secondary(exc)
    if cause:
        ctx.report_failure(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
    if ctx.rank == 0:
        line = distributed.failure_line(ctx, exc, handler.step, handler.checkpoint)
        if handler.printed.acquire(blocking=False):
            print(f"{handler.prog}: {line}", file=sys.stderr, flush=True)
    elif cause:
        print(f"{handler.prog}: rank {ctx.rank}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    return 1
