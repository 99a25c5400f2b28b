"""A progress bar inside each epoch, for the commands whose epochs last minutes to an hour (the
paper's Xception: about half an hour per epoch on an AVX2 CPU), so a long epoch does not look
like a hang. Keras' own line per epoch (verbose=2) stays the log's record; the bar is cleared."""

from __future__ import annotations

from typing import IO, Any

import tf_keras as keras
from tqdm import tqdm


class BatchProgress(keras.callbacks.Callback):
    """tqdm over one epoch's steps (elapsed, time left, loss and accuracy so far), then over the
    PublicTest evaluation that closes the epoch."""

    def __init__(self, file: IO[str] | None = None):
        super().__init__()
        self.file = file
        self.bar: Any = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.bar = tqdm(total=self.params.get("steps"), desc=f"epoch {epoch + 1}/{self.params.get('epochs')}",
                        unit="step", leave=False, file=self.file)

    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        if self.bar is not None:
            shown = {k: f"{v:.4f}" for k, v in (logs or {}).items() if k in ("loss", "accuracy")}
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1)

    def on_test_begin(self, logs: dict[str, float] | None = None) -> None:
        if self.bar is not None:
            self.bar.set_description(f"{self.bar.desc}: PublicTest")
            self.bar.refresh()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
