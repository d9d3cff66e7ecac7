"""A synthetic fleet no price list has heard of: an outcomes table (the columns of data/outcomes/README.md) with many
made-up models per service, whose roles around a quality floor are known exactly.

Per service, with F the floor ratio (relative to the starting model's mean quality, as `quality_floor_ratio`):

| role | quality ratio to the start | mean cost per request |
| --- | --- | --- |
| start | 1 (the only highest-quality model) | the reference; about the dearest |
| good | F + 0.03 .. F + 0.05 | 8-40% of the start's |
| trap | F - 0.01 .. F - 0.005 | below the cheapest good one |
| bad | F - 0.35 .. F - 0.15 | 0.5-3% of the start's (the cheapest model is a bad one) |
| dominated | F - 0.10 .. F + 0.02 | 50-130% of the start's: every good model is cheaper and better |

`goods` sets how many good models a service has (default 3, plus one per 3 models over 10). With `goods=0` no
candidate keeps the floor: the dominated models' band becomes F - 0.10 .. F - 0.005, the traps cost 2-30% of the
start's, and the best the loop can do is stay on the start (hindsight saves nothing).

So the best single model in hindsight (as `benchmarks/savings.py` computes it: the cheapest whose quality is at
least F x the start's) is the cheapest good one, and a loop that trusts noisy estimates can promote a trap.

Quality is 0/1 per request. Every prompt has a latent difficulty shared by all models, so answers are correlated
across prompts as on real benchmarks; each model answers correctly exactly the number of prompts that puts its
ratio inside its band (its easiest ones, by a noisy reading of the difficulty), so the bands hold on the table
itself, not only in expectation. Cost is reported in every row (tokens x the model's made-up prices, scaled so the
mean cost per request is exactly the role's), latency is a per-model lognormal. Deterministic per seed.

    python -m simulator.synthetic --out PATH --seed N --floor 0.9 [--models 11 --services 3 --prompts 3000 --goods 3]
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

Role = Literal["start", "good", "trap", "bad", "dominated"]

# Quality-ratio bands as offsets from the floor; cost bands as multiples of the start's mean cost per request.
GOOD_BAND = (0.03, 0.05)
TRAP_BAND = (-0.01, -0.005)
BAD_BAND = (-0.35, -0.15)
DOMINATED_BAND = (-0.10, 0.02)
DOMINATED_BAND_WITHOUT_GOODS = (-0.10, -0.005)  # nothing would dominate one above the floor
GOOD_COST = (0.08, 0.4)
TRAP_COST_OF_CHEAPEST_GOOD = (0.3, 0.8)
TRAP_COST_WITHOUT_GOODS = (0.02, 0.3)
BAD_COST = (0.005, 0.03)
CHEAPEST_BAD_COST = (0.005, 0.01)  # at most 1% of the start's: prices span at least 100x
DOMINATED_COST = (0.5, 1.3)
MIN_MODELS = 10
MAX_TOKENS_OUT = 2048  # a typical max_tokens: answers are cut there
# Kept away from the band edges so the sample ratio k / k0 is inside the band whatever the rounding.
_EDGE = 1e-6

SERVICE_NAMES = ("ticket-triage", "invoice-extract", "doc-qa", "code-review", "chat-support", "search-rerank")
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_SIZES = (3, 7, 8, 13, 14, 22, 34, 46, 70, 72, 110, 180)


@dataclass(frozen=True)
class SyntheticModel:
    service: str
    model: str
    provider: str
    role: Role
    quality: float  # realised mean quality over the service's prompts
    quality_ratio: float  # realised, relative to the start model of the service
    cost_per_request: float  # realised mean cost_usd


@dataclass(frozen=True)
class SyntheticFleet:
    frame: pl.DataFrame
    models: list[SyntheticModel]
    floor: float
    seed: int

    @property
    def services(self) -> list[str]:
        return list(dict.fromkeys(m.service for m in self.models))

    def roles(self, service: str) -> dict[str, Role]:
        return {m.model: m.role for m in self.models if m.service == service}

    def hindsight(self, service: str) -> SyntheticModel:
        """The cheapest model whose quality ratio is at least the floor (benchmarks/savings.py's hindsight)."""
        eligible = [m for m in self.models if m.service == service and m.quality_ratio >= self.floor]
        return min(eligible, key=lambda m: m.cost_per_request)


def synthetic_outcomes(
    seed: int = 0,
    services: int = 3,
    models_per_service: int = 11,
    prompts: int = 3000,
    floor: float = 0.9,
    tasks_per_service: int = 4,
    goods: int | None = None,
) -> pl.DataFrame:
    """The outcomes table of `synthetic_fleet` (same arguments)."""
    return synthetic_fleet(seed, services, models_per_service, prompts, floor, tasks_per_service, goods).frame


def synthetic_fleet(
    seed: int = 0,
    services: int = 3,
    models_per_service: int = 11,
    prompts: int = 3000,
    floor: float = 0.9,
    tasks_per_service: int = 4,
    goods: int | None = None,
) -> SyntheticFleet:
    """A fleet of `services` services, each with `models_per_service` made-up models answering the same `prompts`
    prompts, laid out around `floor` as in the module docstring (`goods`: good models per service, None for the
    default). Pure: the same arguments give the same table."""
    if models_per_service < MIN_MODELS:
        raise ValueError(f"models_per_service must be at least {MIN_MODELS} (got {models_per_service})")
    counts = _role_counts(models_per_service, goods)
    if services < 1 or tasks_per_service < 1:
        raise ValueError("services and tasks_per_service must be at least 1")
    # Below 0.5 a bad model's band would reach zero quality; at 0.97 or above no good model fits under the start.
    if floor < 0.5 or floor + GOOD_BAND[0] >= 1:
        raise ValueError(f"floor must be in [0.5, {1 - GOOD_BAND[0]}) so good models can clear it (got {floor})")
    names = _Names(np.random.default_rng([seed, 0xA11CE]))
    frames, models = [], []
    for index in range(services):
        service = SERVICE_NAMES[index] if index < len(SERVICE_NAMES) else f"service-{index + 1}"
        rng = np.random.default_rng([seed, index])
        frame, summary = _service(rng, names, service, counts, prompts, floor, tasks_per_service, seed)
        frames.append(frame)
        models += summary
    return SyntheticFleet(frame=pl.concat(frames), models=models, floor=floor, seed=seed)


def _role_counts(n: int, goods: int | None = None) -> dict[Role, int]:
    extra = (n - MIN_MODELS) // 3
    good = 3 + extra if goods is None else goods
    if not 0 <= good <= n - 6:  # room for the start, two traps, two bad ones and one dominated
        raise ValueError(f"goods must be in [0, {n - 6}] with {n} models per service (got {good})")
    counts: dict[Role, int] = {"start": 1, "good": good, "trap": 2 + extra, "bad": 2}
    counts["dominated"] = n - sum(counts.values())
    if counts["dominated"] < 1:  # fewer good models leave more dominated ones; more take them from the traps
        counts["trap"] += counts["dominated"] - 1
        counts["dominated"] = 1
    return counts


def _correct_counts(rng: np.random.Generator, role: Role, k0: int, floor: float, any_good: bool) -> int:
    """How many prompts a model of `role` answers correctly, so that count / k0 is inside the role's band."""
    if role == "start":
        return k0
    dominated = DOMINATED_BAND if any_good else DOMINATED_BAND_WITHOUT_GOODS
    low, high = {"good": GOOD_BAND, "trap": TRAP_BAND, "bad": BAD_BAND, "dominated": dominated}[role]
    low, high = floor + low, floor + high
    if role == "good":
        high = min(high, (k0 - 1) / k0)  # strictly below the start: it stays the one highest-quality model
    lowest, highest = math.ceil((low + _EDGE) * k0), math.floor((high - _EDGE) * k0)
    lowest = max(lowest, 1)
    if lowest > highest:
        raise ValueError(f"too few prompts for the {role} band at floor {floor}: pass more prompts")
    return int(rng.integers(lowest, highest + 1))


def _service(
    rng: np.random.Generator,
    names: _Names,
    service: str,
    counts: dict[Role, int],
    n_prompts: int,
    floor: float,
    n_tasks: int,
    seed: int,
) -> tuple[pl.DataFrame, list[SyntheticModel]]:
    # Prompts: a task each; difficulty = the task's offset + the prompt's own; tokens in from the task's length.
    task = rng.integers(n_tasks, size=n_prompts)
    difficulty = rng.normal(0, 0.6, n_tasks)[task] + rng.normal(0, 1.0, n_prompts)
    tokens_in = np.maximum(8, rng.lognormal(np.log(rng.uniform(150, 900, n_tasks))[task], 0.5)).astype(np.int64)
    base_out = np.maximum(1, rng.lognormal(np.log(rng.uniform(40, 300, n_tasks))[task], 0.6))

    start_quality = rng.uniform(0.72, 0.9)
    k0 = round(start_quality * n_prompts)
    roles = [role for role, count in counts.items() for _ in range(count)]
    n_models = len(roles)
    correct = [_correct_counts(rng, role, k0, floor, counts["good"] > 0) for role in roles]
    cost_factor = _cost_factors(rng, roles)
    providers = [names.provider() for _ in range(rng.integers(2, 4))]

    order = rng.permutation(n_models)  # the table's model order says nothing about roles
    # Bigger (dearer) models get bigger made-up parameter counts.
    pool = sorted(rng.choice(_SIZES, n_models, replace=n_models > len(_SIZES)))
    sizes = dict(zip(np.argsort(cost_factor), pool, strict=True))
    start_cost = float(rng.uniform(0.004, 0.012))  # the start's mean cost per request, USD
    frames, summaries = [], []
    for m in order:
        role, k, factor = roles[m], correct[m], cost_factor[m]
        model, provider = names.model(int(sizes[m])), providers[int(rng.integers(len(providers)))]
        # Which prompts it gets right: its k easiest by its own noisy reading of the shared difficulty.
        reading = difficulty * rng.uniform(0.8, 1.5) + rng.logistic(0, 0.8, n_prompts)
        quality = np.zeros(n_prompts)
        quality[np.argpartition(reading, k - 1)[:k]] = 1.0
        tokens_out = base_out * rng.uniform(0.6, 1.6) * rng.lognormal(0, 0.25, n_prompts)
        tokens_out = np.clip(tokens_out, 1, MAX_TOKENS_OUT).astype(np.int64)
        model_in = np.maximum(1, tokens_in * rng.uniform(0.9, 1.15)).astype(np.int64)  # its own tokenizer
        # Made-up list prices (output dearer than input), then scaled so the mean cost per request is exactly the
        # role's multiple of the start's.
        raw = (model_in + tokens_out * rng.uniform(2, 5)) / 1e6
        cost = raw * (start_cost * factor / raw.mean())
        ttft = 150 + 700 * factor**0.35  # dearer (bigger) models are slower to start
        latency = ttft * rng.lognormal(0, 0.35, n_prompts) + tokens_out * (3 + 10 * factor**0.5) * rng.lognormal(
            0, 0.15, n_prompts
        )
        frames.append(
            pl.DataFrame(
                {
                    "service": service,
                    "task": [f"{service}-task{t + 1}" for t in task],
                    "prompt_id": [f"{service}:{j:05d}" for j in range(n_prompts)],
                    "model": model,
                    "provider": provider,
                    "quality": quality,
                    "tokens_in": model_in,
                    "tokens_out": tokens_out,
                    "cost_usd": cost,
                    "latency_ms": np.round(latency, 1),
                    "source": f"simulator.synthetic seed={seed}",
                },
                schema_overrides={"tokens_in": pl.Int64, "tokens_out": pl.Int64},
            )
        )
        summaries.append(
            SyntheticModel(
                service=service,
                model=model,
                provider=provider,
                role=role,
                quality=float(quality.mean()),
                quality_ratio=k / k0,
                cost_per_request=float(cost.mean()),
            )
        )
    return pl.concat(frames), summaries


def _cost_factors(rng: np.random.Generator, roles: list[Role]) -> list[float]:
    """Each model's mean cost per request as a multiple of the start's."""
    n_good = roles.count("good")
    goods = list(rng.uniform(*GOOD_COST, n_good))
    cheapest_good = min(goods) if goods else None
    factors, bads = [], 0
    for role in roles:
        if role == "start":
            factors.append(1.0)
        elif role == "good":
            factors.append(goods.pop())
        elif role == "trap":
            if cheapest_good is None:
                factors.append(rng.uniform(*TRAP_COST_WITHOUT_GOODS))
            else:
                factors.append(cheapest_good * rng.uniform(*TRAP_COST_OF_CHEAPEST_GOOD))
        elif role == "bad":
            factors.append(rng.uniform(*(CHEAPEST_BAD_COST if bads == 0 else BAD_COST)))
            bads += 1
        else:
            factors.append(rng.uniform(*DOMINATED_COST))
    return factors


class _Names:
    """Random-looking model and provider names, unique across the fleet, made of syllables no vendor uses."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.used: set[str] = set()

    def _word(self, syllables: int) -> str:
        letters = [
            str(self.rng.choice(list(_CONSONANTS))) + str(self.rng.choice(list(_VOWELS))) for _ in range(syllables)
        ]
        return "".join(letters) + str(self.rng.choice(list(_CONSONANTS)))

    def _unique(self, make) -> str:
        while (name := make()) in self.used:
            pass
        self.used.add(name)
        return name

    def model(self, size: int) -> str:
        return self._unique(lambda: f"{self._word(2)}-{self._word(1)}-{size}b-ft-{int(self.rng.integers(16**4)):04x}")

    def provider(self) -> str:
        return self._unique(lambda: f"selfhost-{self._word(1)}")


def summary(fleet: SyntheticFleet) -> str:
    """Per service: every model with its mean cost per request, quality ratio and role; the hindsight model."""
    lines = []
    for service in fleet.services:
        rows = sorted((m for m in fleet.models if m.service == service), key=lambda m: -m.cost_per_request)
        start = next(m for m in rows if m.role == "start")
        lines.append(f"{service}: start quality {start.quality:.3f}, floor {fleet.floor} x start")
        lines.append(f"  {'model':<34} {'provider':<16} {'cost/request':>13} {'quality':>8} {'ratio':>7}  role")
        for m in rows:
            lines.append(
                f"  {m.model:<34} {m.provider:<16} {m.cost_per_request:>13.7f} {m.quality:>8.4f}"
                f" {m.quality_ratio:>7.4f}  {m.role}"
            )
        best = fleet.hindsight(service)
        saving = 1 - best.cost_per_request / start.cost_per_request
        lines.append(f"  hindsight: {best.model} ({best.role}), saves {saving:.1%} against the start")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulator.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="parquet file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--floor", type=float, default=0.9, help="quality floor ratio the roles are laid around")
    parser.add_argument("--models", type=int, default=11, help=f"models per service (at least {MIN_MODELS})")
    parser.add_argument("--services", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=3000, help="prompts per service")
    parser.add_argument(
        "--goods", type=int, default=None, help="good models per service (0: no candidate keeps the floor)"
    )
    args = parser.parse_args(argv)
    try:
        fleet = synthetic_fleet(args.seed, args.services, args.models, args.prompts, args.floor, goods=args.goods)
    except ValueError as exc:
        parser.error(str(exc))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fleet.frame.write_parquet(args.out)
    print(summary(fleet))
    print(f"wrote {fleet.frame.height} rows to {args.out}")


if __name__ == "__main__":
    main()
