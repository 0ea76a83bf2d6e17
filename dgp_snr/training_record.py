"""Which code trained a run, in which precision, for how long: one record per training session
(a first start or a resume) in <run_dir>/training_record.json.

A session's record is written when it starts (to_step null) and completed when it ends, saved
or interrupted; a session killed outright keeps to_step null and counts no wall time. Runs
trained before this record existed have none: `summarize` then says so rather than guessing.
"""

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

from dgp_snr.io import write_json
from dgp_snr.source import CodeState, code_state

TRAINING_RECORD_FILE = "training_record.json"


def read_training_record(run_dir: os.PathLike) -> List[Dict[str, Any]]:
    """The run's sessions, oldest first ([] when it has no record or the file is unreadable)."""
    path = Path(run_dir) / TRAINING_RECORD_FILE
    try:
        sessions = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return sessions if isinstance(sessions, list) else []


class TrainingSession:
    """The record of one training session of a run (see the module docstring).

    >>> session = TrainingSession.start(run_dir, from_step=0, precision="mixed")
    >>> ...  # train
    >>> session.finish(to_step=5000)
    """

    def __init__(self, run_dir: Path, index: int, started: float):
        self.run_dir = run_dir
        self.index = index
        self._started = started

    @classmethod
    def start(
        cls,
        run_dir: os.PathLike,
        from_step: int,
        precision: str,
        code: Optional[CodeState] = None,
    ) -> "TrainingSession":
        run_dir = Path(run_dir)
        code = code_state() if code is None else code
        sessions = read_training_record(run_dir)
        sessions.append(
            {
                "from_step": int(from_step),
                "to_step": None,
                "precision": precision,
                **code.to_dict(),
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "wall_time_s": None,
            }
        )
        write_json(run_dir / TRAINING_RECORD_FILE, sessions, indent=1)
        return cls(run_dir, len(sessions) - 1, time.monotonic())

    def finish(self, to_step: int) -> None:
        sessions = read_training_record(self.run_dir)
        if self.index >= len(sessions):  # the file was removed meanwhile: nothing to complete
            return
        sessions[self.index]["to_step"] = int(to_step)
        sessions[self.index]["wall_time_s"] = round(time.monotonic() - self._started, 1)
        write_json(self.run_dir / TRAINING_RECORD_FILE, sessions, indent=1)


def summarize(sessions: List[Dict[str, Any]]) -> Dict[str, Any]:
    """What a report prints for one run: its commits (oldest first, short), whether any session
    ran from a dirty tree, its precisions, total wall time of completed sessions, and the
    steps no session records (trained before the record existed, or in a killed session)."""
    if not sessions:
        return {
            "commits": [],
            "dirty": None,
            "precisions": [],
            "wall_time_s": None,
            "unrecorded_steps": None,
        }
    recorded = 0
    for s in sessions:
        if s.get("to_step") is not None:
            recorded += max(0, s["to_step"] - s["from_step"])
    newest = max((s["to_step"] for s in sessions if s.get("to_step") is not None), default=0)
    commits = [s["git_commit"][:7] if s.get("git_commit") else "outside git" for s in sessions]
    return {
        "commits": list(dict.fromkeys(commits)),
        "dirty": any(bool(s.get("git_dirty")) for s in sessions),
        "precisions": list(dict.fromkeys(s.get("precision") for s in sessions)),
        "wall_time_s": round(sum(s.get("wall_time_s") or 0.0 for s in sessions), 1),
        "unrecorded_steps": max(0, newest - recorded),
    }
