"""The cases to measure (a model × a context × a VRAM budget) and the command line that picks them.

A budget is the free VRAM left to the plan, as on a laptop whose card is that big (6, 8, 12 GiB), or
the whole card as it is. The default list is what is worth a GPU's time: every context on the whole
card, and the laptop budgets where the 7-8B models only partly fit, the cases that decide whether the
plan's partial offload is right.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.gpu_vram import GIB, REPO
from benchmarks.gpu_vram.models import DEMO, MODELS

CONTEXTS: tuple[int, ...] = (2048, 4096, 8192)
BUDGETS: tuple[float | None, ...] = (None, 12.0, 8.0, 6.0)  # GiB of free VRAM; None = the card as it is
DEFAULT_PROMPT_TOKENS = 1500
DEFAULT_MAX_TOKENS = 256
DEFAULT_CARD_GIB = 80.0  # --dry-run without NVML: an H100 80 GB


@dataclass(frozen=True)
class Case:
    model: str  # a key of MODELS
    ctx: int
    budget_gib: float | None  # free VRAM to leave to the plan; None = the whole card as it is

    @property
    def budget_label(self) -> str:
        return "card" if self.budget_gib is None else f"{self.budget_gib:g} GiB"

    @property
    def id(self) -> str:
        budget = "card" if self.budget_gib is None else f"{self.budget_gib:g}GiB"
        return f"{self.model}-ctx{self.ctx}-{budget}"

    @property
    def budget_bytes(self) -> int | None:
        return None if self.budget_gib is None else int(self.budget_gib * GIB)


def default_cases() -> list[Case]:
    """The cases worth a GPU's time (~17, a few minutes on an H100): every context on the whole card,
    and laptop budgets (6, 8, 12 GiB) where the 7-8B models only partly fit."""
    cases = [Case(DEMO, ctx, None) for ctx in CONTEXTS] + [Case(DEMO, 4096, 6.0)]
    cases += [Case("llama3-8b", ctx, None) for ctx in CONTEXTS]
    cases += [Case("llama3-8b", 8192, 12.0), Case("llama3-8b", 4096, 8.0), Case("llama3-8b", 8192, 8.0)]
    cases += [Case("llama3-8b", ctx, 6.0) for ctx in CONTEXTS]
    cases += [Case("mistral-7b", 4096, None), Case("mistral-7b", 8192, 8.0)]
    cases += [Case("mistral-7b", 4096, 6.0), Case("mistral-7b", 8192, 6.0)]
    return cases


QUICK_CASE = Case("llama3-8b", 4096, 6.0)  # partial offload on a laptop-sized budget: the informative one


def all_cases(
    models: Sequence[str] = MODELS,
    contexts: Sequence[int] = CONTEXTS,
    budgets: Sequence[float | None] = BUDGETS,
) -> list[Case]:
    return [Case(m, c, b) for m in models for c in contexts for b in budgets]


def select_cases(args: argparse.Namespace) -> list[Case]:
    """The cases to run: --quick, --all, or the default list, narrowed by --models/--contexts/--budgets."""
    if args.quick:
        return [QUICK_CASE]
    cases = all_cases() if args.all else default_cases()
    if args.models:
        cases = [c for c in cases if c.model in args.models]
    if args.contexts:
        cases = [c for c in cases if c.ctx in args.contexts]
    if args.budgets:
        cases = [c for c in cases if c.budget_gib in args.budgets]
    if not cases and (args.models or args.contexts or args.budgets):
        # Filters that select nothing from the default list: take their cross product instead.
        cases = all_cases(args.models or MODELS, args.contexts or CONTEXTS, args.budgets or BUDGETS)
    return cases


# -- the command line ----------------------------------------------------------------------------------


def parse_budget(text: str) -> float | None:
    value = text.strip().lower()
    if value in ("card", "full", "carte"):
        return None
    try:
        gib = float(value.removesuffix("gib").removesuffix("g"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"budget {text!r}: 'card' or a number of GiB (6, 8, 12…)") from None
    if gib <= 0:
        raise argparse.ArgumentTypeError(f"budget {text!r} must be positive")
    return gib


def _csv(convert: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        return [convert(part) for part in text.split(",") if part.strip()]

    return parse


def _model_key(text: str) -> str:
    key = text.strip()
    if key not in MODELS:
        raise argparse.ArgumentTypeError(f"unknown model {key!r}; known: {', '.join(MODELS)}")
    return key


def _context(text: str) -> int:
    try:
        ctx = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"context {text!r} is not a number") from None
    if ctx < 512 or ctx % 256:
        raise argparse.ArgumentTypeError(f"context {ctx}: at least 512 and a multiple of 256")
    return ctx


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gpu_vram_check.py",
        description="Predicted vs measured VRAM of the memory plan on an NVIDIA GPU (issue 3, item 7).",
    )
    p.add_argument("--out", type=Path, help="write every case's figures to this JSON file")
    p.add_argument("--quick", action="store_true", help=f"one case only ({QUICK_CASE.id})")
    p.add_argument("--all", action="store_true", help="every model × context × budget (36 cases)")
    p.add_argument("--models", type=_csv(_model_key), help=f"only these models ({','.join(MODELS)})")
    p.add_argument("--contexts", type=_csv(_context), help="only these contexts (e.g. 2048,4096)")
    p.add_argument("--budgets", type=_csv(parse_budget), help="only these budgets: card,12,8,6 (GiB)")
    p.add_argument("--dry-run", action="store_true", help="no GPU needed: plans and predicted figures only")
    p.add_argument(
        "--card-gib", type=float, default=None,
        help=f"--dry-run without NVML: the card's size in GiB (default {DEFAULT_CARD_GIB:g})",
    )
    p.add_argument(
        "--models-dir", type=Path, default=REPO / "build" / "gpu-vram-models",
        help="where the shape-only GGUF files are written (sparse: a few hundred KB on disk each)",
    )
    p.add_argument("--logs-dir", type=Path, default=REPO / "build" / "gpu-vram-logs", help="runner logs")
    p.add_argument("--prompt-tokens", type=int, default=DEFAULT_PROMPT_TOKENS)
    p.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS)
    p.add_argument("--load-timeout", type=float, default=300.0, help="seconds for one model load")
    p.add_argument("--no-fit", action="store_true", help="skip the emulation of llama.cpp's fit")
    p.add_argument(
        "--resume", action="store_true",
        help="keep the cases already measured in --out and run only the others (after a time limit)",
    )
    p.add_argument(
        "--time-budget", type=float, default=0.0, metavar="SECONDS",
        help="start no new case after this many seconds (then --resume goes on); 0 = no limit",
    )
    p.add_argument(
        "--print-requirements", action="store_true",
        help="print the pinned runtime packages (used by gpu_vram_check.sh prepare) and exit",
    )
    p.add_argument("--with-numpy", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--export-demo-header", type=Path, metavar="DIR", help=argparse.SUPPRESS)
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.prompt_tokens < 16 or args.max_tokens < 1:
        build_parser().error("--prompt-tokens must be at least 16 and --max-tokens at least 1")
    if args.resume and args.out is None:
        build_parser().error("--resume needs --out (the file of the cases already measured)")
    return args
