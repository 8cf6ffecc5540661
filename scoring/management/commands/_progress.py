"""A tqdm bar that follows the ML core's ``(step, total, metrics, message)`` progress calls."""

from tqdm import tqdm


class ProgressBar:
    def __init__(self, description: str):
        self.bar = tqdm(desc=description, unit="step", dynamic_ncols=True)

    def __call__(
        self, step: int, total: int, metrics: dict | None = None, message: str = ""
    ) -> None:
        if total and self.bar.total != total:
            self.bar.total = total
        self.bar.update(step - self.bar.n)
        if metrics:
            self.bar.set_postfix(
                {k: f"{v:.4f}" if isinstance(v, float) else v for k, v in metrics.items()}
            )
        if message:
            self.bar.write(message)

    def close(self) -> None:
        self.bar.close()
