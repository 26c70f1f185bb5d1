"""Each trial's reports as Tune saw them, kept in the run directory so that a resumed search replays a trial that
ended instead of training it again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray.tune.result import AUTO_RESULT_KEYS

#: Keys Tune adds to every result; a replay reports only what the trial itself reported.
_TUNE_KEYS = {*AUTO_RESULT_KEYS, "trial_id", "done", "experiment_tag", "should_checkpoint"}


class TrialReports:
    """Each trial's reports as JSON lines in one folder (the run directory's ``reports``), a marker once it ended
    normally, its attempt count, and the reason it diverged if it did.

    Tune saves its own state a moment after a trial ends; a crash in between would make a resumed search
    train that trial again.  Instead the trainable replays the recorded reports of a trial marked done
    (``replay``), so the searcher and ASHA see the same values and nothing is trained twice.  The run
    directory must be on storage every node sees (it is Ray Train's ``storage_path`` too).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _log(self, trial_id: str) -> Path:
        return self.root / f"{trial_id}.jsonl"

    def _done(self, trial_id: str) -> Path:
        return self.root / f"{trial_id}.done"

    def _attempts(self, trial_id: str) -> Path:
        return self.root / f"{trial_id}.attempts"

    def _diverged(self, trial_id: str) -> Path:
        return self.root / f"{trial_id}.diverged"

    def new_attempt(self, trial_id: str) -> int:
        """Count one more attempt at ``trial_id`` (the first is 1); returns the count."""
        self.root.mkdir(parents=True, exist_ok=True)
        count = self.attempts(trial_id) + 1
        self._attempts(trial_id).write_text(str(count))
        return count

    def attempts(self, trial_id: str) -> int:
        try:
            return int(self._attempts(trial_id).read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def mark_diverged(self, trial_id: str, reason: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._diverged(trial_id).write_text(reason)

    def diverged(self, trial_id: str) -> str | None:
        """Why ``trial_id`` diverged, or None when it did not."""
        path = self._diverged(trial_id)
        return path.read_text() if path.exists() else None

    def start(self, trial_id: str) -> None:
        """A trial (re)starts from scratch: forget a partial history, keep a finished one for its replay."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not self._done(trial_id).exists():
            self._log(trial_id).unlink(missing_ok=True)

    def append(self, trial_id: str, result: dict[str, Any]) -> None:
        if self._done(trial_id).exists():
            return  # a replay reports what is already recorded
        reported = {k: v for k, v in result.items() if k not in _TUNE_KEYS and isinstance(v, (int, float, str))}
        with open(self._log(trial_id), "a") as handle:
            handle.write(json.dumps(reported) + "\n")

    def finish(self, trial_id: str) -> None:
        self._done(trial_id).touch()

    def ended(self, trial_id: str) -> bool:
        """Whether ``trial_id`` ended normally: ran to its end or was stopped by the scheduler."""
        return self._done(trial_id).exists()

    def replay(self, trial_id: str) -> list[dict[str, Any]] | None:
        """The reports of a trial that already ended, or None when it must train."""
        if not self._done(trial_id).exists():
            return None
        log = self._log(trial_id)
        if not log.exists():  # it ended before its first report
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
