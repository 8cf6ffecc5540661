"""GAPO vs Diffusion-DPO at equal steps when pair gaps vary and small gaps are noisy (tiny, CPU).

The paper's argument for GAPO: a pair whose rewards barely differ says little (and is often
wrong), a pair far apart says a lot; weighting each pair's DPO term by its reward gap uses that.
The loop test's best-vs-worst pairs all have about the same gap, so it cannot show this. Here:

  round 0: C conditions x K candidates from the base tiny generator;
  true reward = mean brightness, min-max normalised over the round to [0, 1];
  observed reward = true + N(0, noise), clipped to [0, 1] (an imperfect reward model);
  pairs = every within-condition pair, ordered by the observed reward (K*(K-1)/2 per condition);
  train gapo and dpo with the same config, steps and seed; round 1 with the same seeds;
  report the change in TRUE mean reward, and how many pairs were wrong by the true reward.

Run: .venv/bin/python bench/gapo_vs_dpo.py [--seeds 0 1 2] [--noise 0.25] [--steps 40]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tests.toy import mean_brightness, synthetic_conditions
from training.alignment.cogvideox import load_generator
from training.alignment.pairs import Pair
from training.alignment.sampling import generate_candidates
from training.alignment.trainer import TrainConfig, train


def all_pairs(candidates, observed: np.ndarray) -> list[Pair]:
    by_condition: dict[str, list[int]] = {}
    for index, candidate in enumerate(candidates):
        by_condition.setdefault(candidate.condition_key, []).append(index)
    pairs = []
    for key, indices in sorted(by_condition.items()):
        for a, b in itertools.combinations(indices, 2):
            win, lose = (a, b) if observed[a] >= observed[b] else (b, a)
            if observed[win] == observed[lose]:
                continue
            pairs.append(
                Pair(
                    condition_id=int(key),
                    winner_clip_id=win,
                    loser_clip_id=lose,
                    winner_reward=float(observed[win]),
                    loser_reward=float(observed[lose]),
                    winner_video=candidates[win].video,
                    loser_video=candidates[lose].video,
                    prompt=candidates[win].prompt,
                    first_frame=candidates[win].first_frame,
                )
            )
    return pairs


def run_seed(seed: int, args, out: Path) -> dict:
    conditions = synthetic_conditions(out / "conditions", count=args.conditions, seed=seed)
    round0 = generate_candidates(
        load_generator("tiny"),
        conditions,
        candidates_per_condition=args.k,
        base_seed=seed,
        out_dir=out / "round0",
    )
    raw = np.array([mean_brightness(c.video) for c in round0])
    low, high = raw.min(), raw.max()
    true = (raw - low) / (high - low)
    observed = np.clip(true + np.random.default_rng(seed).normal(0, args.noise, len(true)), 0, 1)
    pairs = all_pairs(round0, observed)
    wrong = [p for p in pairs if true[p.winner_clip_id] < true[p.loser_clip_id]]
    row = {
        "seed": seed,
        "pairs": len(pairs),
        "wrong_pairs": len(wrong),
        "gap_wrong": float(np.mean([p.reward_difference for p in wrong]))
        if wrong
        else float("nan"),
        "gap_right": float(np.mean([p.reward_difference for p in pairs if p not in wrong])),
    }
    # GAPO's loss is DPO's scaled by each pair's gap weight, which also shrinks its step;
    # --match-step divides GAPO's learning rate by the mean weight so the average steps match.
    weights = [args.alpha**p.winner_reward - args.alpha**p.loser_reward for p in pairs]
    row["mean_gap_weight"] = float(np.mean(weights))
    for loss_type in ("gapo", "dpo"):
        matched = loss_type == "gapo" and args.match_step
        config = TrainConfig(
            output_dir=str(out / loss_type),
            loss_type=loss_type,
            alpha=args.alpha,
            lora_rank=8,
            learning_rate=args.lr / row["mean_gap_weight"] if matched else args.lr,
            max_steps=args.steps,
            batch_pairs=2,
            checkpoint_every=0,
            seed=seed,
        )
        result = train(config, pairs)
        round1 = generate_candidates(
            load_generator("tiny"),
            conditions,
            candidates_per_condition=args.k,
            base_seed=seed,
            out_dir=out / f"round1-{loss_type}",
            lora_dir=result.lora_dir,
        )
        after = (np.array([mean_brightness(c.video) for c in round1]) - low) / (high - low)
        row[loss_type] = float(after.mean() - true.mean())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--conditions", type=int, default=6)
    parser.add_argument("--k", type=int, default=4, help="candidates per condition")
    parser.add_argument(
        "--noise", type=float, default=0.25, help="std of the observed-reward noise"
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--alpha", type=float, default=2.0)
    parser.add_argument(
        "--match-step",
        action="store_true",
        help="divide GAPO's learning rate by the mean gap weight",
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(
        f"{args.conditions} conditions x {args.k} candidates, all within-condition pairs, "
        f"observed reward noise {args.noise}, {args.steps} steps, lr {args.lr}"
        f"{' (GAPO: lr / mean gap weight)' if args.match_step else ''}"
    )
    print("seed  pairs  wrong  gap(right)  gap(wrong)   d_true GAPO   d_true DPO")
    rows, started = [], time.monotonic()
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="gapo-vs-dpo-") as tmp:
            row = run_seed(seed, args, Path(tmp))
        rows.append(row)
        print(
            f"{row['seed']:>4}  {row['pairs']:>5}  {row['wrong_pairs']:>5}  {row['gap_right']:>10.3f}  "
            f"{row['gap_wrong']:>10.3f}  {row['gapo']:>+12.4f}  {row['dpo']:>+11.4f}",
            flush=True,
        )
    gapo, dpo = np.mean([r["gapo"] for r in rows]), np.mean([r["dpo"] for r in rows])
    wins = sum(r["gapo"] > r["dpo"] for r in rows)
    print(
        f"mean change in true (normalised) reward: GAPO {gapo:+.4f}, DPO {dpo:+.4f}; "
        f"GAPO ahead on {wins}/{len(rows)} seeds ({time.monotonic() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
