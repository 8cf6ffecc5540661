"""Which objective learns more per human judgement: ratings (regression), comparisons (pairs:
Bradley-Terry with ties) or half of each (joint)? On the synthetic clips whose six labels follow
known rules (scoring.anime_reward.synthetic.make_rule_clips), held-out pairwise accuracy without
and with ties per dimension, worst and mean over seeds.

    .venv/bin/python bench/comparisons.py
    .venv/bin/python bench/comparisons.py --seeds 0 --clips 64 --epochs 20     # a quick look

Simulated judges, one noise model for both kinds:
- a judge perceives a clip's quality on a dimension as its true 1-5 label + N(0, NOISE);
- a rater reports the perception rounded and clipped to 1..5 (a clip's label is the mean of its
  ratings);
- a comparer perceives both clips the same way and answers "tie" when the perceived gap is under
  TIE_GAP (0.5 on the 1-5 scale, the gap the held-out label accuracy also treats as "clearly
  different"), else the side perceived better. The overall choice compares the perceived means.
Equal numbers of judgements: one six-dimension rating counts the same as one six-dimension
comparison (both are one look at the clip(s) and six answers; a comparison shows two clips, so it
is the cheaper of the two for the comparer only if watching two clips side by side costs no more
than watching one: we do not assume it is cheaper). The budget is ``--ratings-per-clip`` x the
training clips: regression gets that many ratings (spread evenly over the clips), pairs that
many comparisons between random training clips, joint half of each. The held-out judgements are
made by the same simulated comparers on the test clips (a quarter of the clips, whole), so every
objective is measured the same way. Encoders are frozen (random tiny weights: only the heads
learn), as the simulator is about the labels, not the features; ``--finetune`` trains encoders too.
The simulator's constants are set once, before any result: they are not tuned to make one win.

Measured (defaults: seeds 0 1 2, 128 clips, 2 judgements per train clip = 192, 30 epochs, frozen;
867 s on 2 busy cores), mean accuracy without ties: pairs best on smoothness (0.77 vs regression
0.72) and character (0.65 vs 0.63), regression on motion (0.71 vs pairs 0.67) and image
consistency (0.78 vs 0.75), joint on appeal (0.83) and overall (0.77 vs 0.75); text is near
chance for all three (frozen random features cannot see its rule). Most gaps are within the
seeds' spread: no objective wins everywhere at this budget.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labelhub.dimensions import DIMENSION_KEYS  # noqa: E402
from scoring.anime_reward.comparisons import Comparison  # noqa: E402
from scoring.anime_reward.synthetic import make_gallery, make_rule_clips  # noqa: E402
from scoring.anime_reward.train import RewardItem, train_reward  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reward_learning import bench_config  # noqa: E402

from tests.reward_data import reward_items  # noqa: E402

NOISE = 0.75  # sd of a judge's perception on the 1-5 scale (about what real annotators spread)
TIE_GAP = 0.5  # a comparer calls a tie below this perceived gap
OBJECTIVES = ("regression", "pairs", "joint")
KEYS = (*DIMENSION_KEYS, "overall")


def perceive(true: dict[str, float], rng: random.Random) -> dict[str, float]:
    return {key: true[key] + rng.gauss(0.0, NOISE) for key in DIMENSION_KEYS}


def rate(true: dict[str, float], rng: random.Random) -> dict[str, float]:
    return {key: min(5, max(1, round(v))) for key, v in perceive(true, rng).items()}


def compare(a, b, split: str, rng: random.Random) -> list[Comparison]:
    """One six-dimension comparison (plus the overall choice it implies) of items ``a`` and ``b``."""
    pa, pb = perceive(a.true, rng), perceive(b.true, rng)
    pa["overall"], pb["overall"] = statistics.mean(pa.values()), statistics.mean(pb.values())
    out = []
    for key in KEYS:
        gap = pa[key] - pb[key]
        choice = "tie" if abs(gap) < TIE_GAP else ("a" if gap > 0 else "b")
        out.append(Comparison(a.clip_id, b.clip_id, key, choice, split))
    return out


def simulate(
    items: list[RewardItem], objective: str, budget: int, held_out: list[Comparison], seed: int
):
    """Training items (labels from simulated ratings, or a constant the pairs loss never reads)
    and comparisons for one objective, with ``budget`` six-dimension judgements in all."""
    rng = random.Random(f"{seed}:{objective}")
    train = [i for i in items if i.split == "train"]
    ratings = {"regression": budget, "pairs": 0, "joint": budget // 2}[objective]
    comparisons = budget - ratings
    per_clip: dict = {i.clip_id: [] for i in train}
    for n in range(ratings):  # evenly over the clips, in a shuffled order
        if n % len(train) == 0:
            order = rng.sample(train, len(train))
        clip = order[n % len(train)]
        per_clip[clip.clip_id].append(rate(clip.true, rng))
    out = []
    for item in items:
        copy = RewardItem(**{k: getattr(item, k) for k in RewardItem.__dataclass_fields__})
        if item.split == "train":
            scores = per_clip[item.clip_id]
            copy.labels = (
                {k: statistics.mean(s[k] for s in scores) for k in DIMENSION_KEYS}
                if scores
                else dict.fromkeys(DIMENSION_KEYS, 3.0)  # unrated: pairs only (never read)
            )
        out.append(copy)
    if objective == "joint":  # a clip without a rating would teach regression a fake 3
        rated = {c for c, s in per_clip.items() if s}
        out = [i for i in out if i.split == "test" or i.clip_id in rated]
        train = [i for i in train if i.clip_id in rated]
    judged = []
    for _ in range(comparisons):
        a, b = rng.sample(train, 2)
        judged.extend(compare(a, b, "train", rng))
    return out, judged + held_out


def one_seed(
    directory: Path,
    *,
    seed: int,
    clips: int,
    epochs: int,
    ratings_per_clip: int,
    finetune: bool,
    test_pairs: int,
) -> dict:
    gallery = make_gallery(directory / "gallery")
    items = reward_items(make_rule_clips(directory / "clips", clips, seed=seed))
    for item in items:
        item.true = dict(item.labels)  # the rule's labels: what every judge perceives with noise
        if not finetune:
            item.character_id = None  # frozen: no character gallery training
    test = [i for i in items if i.split == "test"]
    rng = random.Random(f"{seed}:held-out")
    held_out = []
    for _ in range(test_pairs):
        a, b = rng.sample(test, 2)
        held_out.extend(compare(a, b, "test", rng))
    budget = ratings_per_clip * sum(i.split == "train" for i in items)
    out = {}
    for objective in OBJECTIVES:
        train_items, comparisons = simulate(items, objective, budget, held_out, seed)
        config = bench_config(
            preset="tiny", epochs=epochs, seed=seed, finetune=finetune, objective=objective
        )
        result = train_reward(
            train_items,
            config,
            directory / f"model-{objective}",
            gallery=gallery if finetune else None,
            comparisons=comparisons,
        )
        out[objective] = {
            key: (
                result.metrics[key]["comparison_accuracy"],
                result.metrics[key]["comparison_accuracy_ties"],
            )
            for key in KEYS
        }
        print(
            f"#   seed {seed} {objective:<10} "
            + ", ".join(f"{k[:12]} {v[0]:.2f}/{v[1]:.2f}" for k, v in out[objective].items()),
            flush=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--clips", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--ratings-per-clip", type=int, default=2, help="the budget, per train clip"
    )
    parser.add_argument("--test-pairs", type=int, default=300, help="held-out comparisons")
    parser.add_argument("--finetune", action="store_true", help="fine-tune the encoders too")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    runs = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="comparisons-bench-") as tmp:
            runs.append(
                one_seed(
                    Path(tmp),
                    seed=seed,
                    clips=args.clips,
                    epochs=args.epochs,
                    ratings_per_clip=args.ratings_per_clip,
                    finetune=args.finetune,
                    test_pairs=args.test_pairs,
                )
            )
    print(
        f"# held-out pairwise accuracy without ties / with ties (tie-calibrated), worst and mean of "
        f"seeds {args.seeds}; {args.clips} clips (3/4 train), {args.ratings_per_clip} judgements "
        f"per train clip, noise sd {NOISE}, tie gap {TIE_GAP}, {args.epochs} epochs, "
        f"{'fine-tuned' if args.finetune else 'frozen'} encoders; {time.perf_counter() - started:.0f} s"
    )
    header = "".join(f"{o:>26}" for o in OBJECTIVES)
    print(f"# {'dimension':<22}{header}   best (no ties / ties, by mean)")
    for key in KEYS:
        cells, means = [], {}
        for objective in OBJECTIVES:
            values = [run[objective][key] for run in runs]
            worst = [min(v[i] for v in values) for i in (0, 1)]
            mean = [statistics.mean(v[i] for v in values) for i in (0, 1)]
            means[objective] = mean
            cells.append(f"{worst[0]:.3f}/{worst[1]:.3f} ({mean[0]:.3f}/{mean[1]:.3f})")
        best = [max(OBJECTIVES, key=lambda o: means[o][i]) for i in (0, 1)]
        print(f"{key:<24}" + "".join(f"{c:>26}" for c in cells) + f"   {best[0]} / {best[1]}")


if __name__ == "__main__":
    main()
