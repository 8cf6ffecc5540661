"""The six AnimeReward dimensions (METHOD.md). Plain Python: the ML core imports this too."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Dimension:
    key: str
    name: str
    group: str  # "appearance" or "consistency"
    question: str
    anchors: dict[int, str]  # one-line anchor for scores 1, 3 and 5


DIMENSIONS: tuple[Dimension, ...] = (
    Dimension(
        "visual_smoothness",
        "Visual smoothness",
        "appearance",
        "Frames alone: no jitter, flicker, warping or broken anatomy between frames.",
        {
            1: "constant jitter, flicker or melting bodies",
            3: "a few glitches, mostly stable",
            5: "perfectly stable, clean transitions",
        },
    ),
    Dimension(
        "visual_motion",
        "Visual motion",
        "appearance",
        "How much the main character moves.",
        {
            1: "static, nothing moves",
            3: "some clear but small movement",
            5: "large, clear action (running, jumping, dancing)",
        },
    ),
    Dimension(
        "visual_appeal",
        "Visual appeal",
        "appearance",
        "How good the frames look: clarity, colour, composition, no artefacts.",
        {
            1: "blurry, ugly or heavy artefacts",
            3: "acceptable but plain",
            5: "crisp, beautiful, well composed",
        },
    ),
    Dimension(
        "text_consistency",
        "Text-video consistency",
        "consistency",
        "The video shows what the prompt says: subjects, actions, setting.",
        {
            1: "unrelated to the prompt",
            3: "partly matches the prompt",
            5: "everything in the prompt is shown",
        },
    ),
    Dimension(
        "image_consistency",
        "Image-video consistency",
        "consistency",
        "The video stays faithful to the input first frame's content and style.",
        {
            1: "drifts away from the first frame",
            3: "same scene, style or content changes",
            5: "faithful to the first frame throughout",
        },
    ),
    Dimension(
        "character_consistency",
        "Character consistency",
        "consistency",
        "Characters keep their identity, design and style throughout.",
        {
            1: "characters change identity or design",
            3: "recognisable, some details change",
            5: "identity and design kept exactly",
        },
    ),
)

DIMENSION_KEYS: tuple[str, ...] = tuple(d.key for d in DIMENSIONS)
SCORE_MIN, SCORE_MAX = 1, 5


def score_to_unit(score: float) -> float:
    """Map a 1-5 human score to the reward scale [0, 1]: (score - 1) / 4."""
    return (score - SCORE_MIN) / (SCORE_MAX - SCORE_MIN)
