"""The trial of a newly installed model: its first ``model.trial_items`` items against the previous model's.

The service starts a trial when the model it runs is the store's current version and nothing has been said of
that install yet (``ModelStore.on_trial``). The baseline is the last ``trial_items`` records of other models
(what ran before the install). When the new model has sorted as many items, its share of ``rejected`` and of
``error`` items is compared with the baseline's: more than ``trial_margin`` above either, and the store's
``current`` goes back to the previous version, the verdict is logged, and the run stops with an error so that
systemd restarts it on the previous model. Otherwise the install is noted as kept. A restart during the trial
starts the count again.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from edge.classifier import ImageClassifier
from edge.config import Settings
from edge.errors import ModelError
from edge.model_store import ModelStore
from edge.records import ItemRecord, Records
from edge.sources import Frame

logger = logging.getLogger("smartbin")

WATCHED = ("rejected", "error")


def shares(outcomes: Counter[str], items: int) -> dict[str, float]:
    return {outcome: outcomes[outcome] / items if items else 0.0 for outcome in WATCHED}


class ModelTrial:
    """An observer of the sorting loop that judges a new model on its first items (see the module)."""

    def __init__(self, store: ModelStore, install: dict[str, object], baseline: dict[str, float], items: int,
                 margin: float, stop: threading.Event) -> None:
        self.store = store
        self.install = install
        self.baseline = baseline
        self.items = items
        self.margin = margin
        self.stop = stop
        self.outcomes: Counter[str] = Counter()
        self.seen = 0
        self.failed: str | None = None

    @classmethod
    def start(cls, settings: Settings, classifier: ImageClassifier, records: Records,
              stop: threading.Event) -> ModelTrial | None:
        """The trial of ``classifier``'s model if it was just installed and a baseline exists, else None."""
        items = settings.model.trial_items
        store = ModelStore(records.path.parent)
        install = store.on_trial(classifier.path) if items else None
        if install is None:
            return None
        before = records.query("SELECT outcome FROM items WHERE model_sha256 IS NOT ? ORDER BY id DESC LIMIT ?",
                               (classifier.sha256, items))
        if len(before) < min(items, 20):
            store.note({"action": "kept", "to": install["to"], "why": "no earlier items to compare with"})
            logger.info("model %s kept without a trial: no earlier items to compare with", install["to"])
            return None
        baseline = shares(Counter(row["outcome"] for row in before), len(before))
        logger.info("model %s on trial for %d items (previous model: %s)", install["to"], items,
                    ", ".join(f"{k} {v:.1%}" for k, v in baseline.items()))
        return cls(store, install, baseline, items, settings.model.trial_margin, stop)

    def on_frame(self, frame: Frame) -> None:
        """Frames do not count."""

    def on_item(self, item_id: int, record: ItemRecord) -> None:
        if self.seen >= self.items:
            return
        self.seen += 1
        self.outcomes[record.outcome] += 1
        if self.seen == self.items:
            self._judge()

    def _judge(self) -> None:
        now = shares(self.outcomes, self.seen)
        worse = [f"{k} {now[k]:.1%} vs {self.baseline[k]:.1%}" for k in WATCHED
                 if now[k] > self.baseline[k] + self.margin]
        key = self.install["to"]
        figures = {"items": self.seen, "shares": now, "baseline": self.baseline}
        if not worse:
            self.store.note({"action": "kept", "to": key, **figures})
            logger.info("model %s kept after its trial of %d items (%s)", key, self.seen,
                        ", ".join(f"{k} {v:.1%}" for k, v in now.items()))
            return
        previous = self.install.get("from")
        where = f"version {previous}" if previous else "the configured (bundled) model"
        self.failed = (f"model {key} rolled back automatically to {where} after {self.seen} items: "
                       f"{'; '.join(worse)} (more than {self.margin:.0%} above the previous model)")
        try:
            self.store.switch(self.store.previous(), {"action": "rollback", "auto": True, "from": key,
                                                      "to": previous, "reason": self.failed, **figures})
        except Exception as exc:  # the store is on the same disk as the records: say so, keep the verdict
            self.failed += f"; the rollback itself failed: {exc}"
        logger.error("%s; restarting", self.failed)
        self.stop.set()

    def check(self) -> None:
        """After the run: raise the verdict of a failed trial (exit 1: systemd restarts on the previous model)."""
        if self.failed is not None:
            raise ModelError(self.failed)
