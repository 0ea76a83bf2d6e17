"""Which code made a result: the code fingerprint, the per-run training record, and the
sweep's refusal to start tasks from code that changed under it."""

import json
import threading

import pytest
from distributed import Client

from dgp_snr.source import CodeState, code_fingerprint, code_state, code_version
from dgp_snr.sweep import engine
from dgp_snr.sweep.tasks import Task
from dgp_snr.training_record import TrainingSession, read_training_record, summarize


def _tree(root):
    (root / "dgp_snr").mkdir(parents=True)
    (root / "experiments").mkdir()
    (root / "dgp_snr" / "a.py").write_text("x = 1\n")
    (root / "experiments" / "run.py").write_text("print('run')\n")
    return root


def test_the_fingerprint_follows_the_code_and_nothing_else(tmp_path):
    root = _tree(tmp_path)
    before = code_fingerprint(root)
    (root / "dgp_snr" / "data.csv").write_text("1,2\n")  # data and caches do not count
    (root / "dgp_snr" / "__pycache__").mkdir()
    (root / "dgp_snr" / "__pycache__" / "a.cpython-311.py").write_text("")
    assert code_fingerprint(root) == before
    (root / "dgp_snr" / "a.py").write_text("x = 2\n")
    edited = code_fingerprint(root)
    assert edited != before
    (root / "dgp_snr" / "a.py").write_text("x = 1\n")
    assert code_fingerprint(root) == before
    (root / "dgp_snr" / "b.py").write_text("")  # an added module
    assert code_fingerprint(root) != before
    (root / "dgp_snr" / "b.py").rename(root / "dgp_snr" / "c.py")  # a renamed one
    assert code_fingerprint(root) not in (before, edited)


def test_code_outside_git_has_no_commit(tmp_path):
    state = code_state(_tree(tmp_path))
    assert (state.git_commit, state.git_dirty) == (None, None)
    assert "outside git" in state.describe()


def test_the_code_is_dirty_when_its_python_files_differ_from_the_commit_only(tmp_path):
    import subprocess

    root = _tree(tmp_path)
    (root / "report.md").write_text("numbers\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(root)]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "c"], check=True)
    assert code_state(root).git_dirty is False
    (root / "report.md").write_text("new numbers\n")  # a result written into the tree
    assert code_state(root).git_dirty is False
    assert code_version(root=root)["git_dirty"] is True  # the tree as a whole is dirty
    (root / "experiments" / "run.py").write_text("print('edited')\n")
    assert code_state(root).git_dirty is True


def test_this_checkout_names_its_commit():
    version = code_version()
    assert len(version["git_commit"]) == 40 and isinstance(version["git_dirty"], bool)


def test_training_sessions_record_their_code_steps_and_time(tmp_path):
    code = CodeState("a" * 40, False, "f1")
    first = TrainingSession.start(tmp_path, 0, "mixed", code=code)
    first.finish(100)
    second = TrainingSession.start(tmp_path, 100, "mixed", code=CodeState("b" * 40, True, "f2"))
    sessions = read_training_record(tmp_path)
    assert sessions[1]["to_step"] is None  # running (or killed): no end, no wall time
    second.finish(250)
    sessions = read_training_record(tmp_path)
    assert [(s["from_step"], s["to_step"]) for s in sessions] == [(0, 100), (100, 250)]
    assert all(s["wall_time_s"] >= 0 for s in sessions)
    summary = summarize(sessions)
    assert summary["commits"] == ["aaaaaaa", "bbbbbbb"]
    assert summary["dirty"] is True and summary["precisions"] == ["mixed"]
    assert summary["unrecorded_steps"] == 0


def test_steps_before_the_record_or_in_a_killed_session_are_unrecorded():
    assert summarize([])["unrecorded_steps"] is None
    sessions = [
        {"from_step": 500, "to_step": 800, "git_commit": "c" * 40, "wall_time_s": 10.0},
        {"from_step": 800, "to_step": None, "git_commit": "c" * 40, "wall_time_s": None},
        {"from_step": 900, "to_step": 1000, "git_commit": "c" * 40, "wall_time_s": 5.0},
    ]
    summary = summarize(sessions)
    assert summary["unrecorded_steps"] == 1000 - 300 - 100
    assert summary["wall_time_s"] == 15.0


# ------------------------------------------------------------------------------ sweep guard
class _Checkout:
    """A code state that changes once `edit` is set (as an edit on disk would)."""

    def __init__(self):
        self.edit = threading.Event()

    def __call__(self) -> CodeState:
        return CodeState("0" * 40, self.edit.is_set(), "edited" if self.edit.is_set() else "v1")


@pytest.mark.parametrize("allow", [False, True])
def test_a_task_is_refused_once_the_code_changed_under_the_sweep(tmp_path, allow):
    checkout = _Checkout()
    guard = engine.CodeGuard(checkout(), allow_changes=allow, current=checkout)
    edit = f"import pathlib; pathlib.Path({str(tmp_path / 'edited')!r}).touch()"
    tasks = [
        Task("first", "train", ["-c", edit], lambda: "to run"),
        Task("second", "train", ["-c", "pass"], lambda: "to run", deps=["first"]),
        Task("third", "plot", ["-c", "pass"], lambda: "to run", deps=["second"]),
    ]

    def current() -> CodeState:  # the first task "edits the code"
        if (tmp_path / "edited").exists():
            checkout.edit.set()
        return checkout()

    guard.current = current
    with engine.local_cluster(engine.Resources(workers=1, cores=1)) as cluster:
        with Client(cluster) as client:
            summary = engine.run_tasks(
                client,
                tasks,
                {t.key: "to run" for t in tasks},
                tmp_path / "logs",
                retries=0,
                progress=False,
                poll_s=0.2,
                guard=guard,
            )
    outcomes = {o.task.key: (o.status, o.detail) for o in summary.outcomes}
    records = [json.loads(line) for line in (tmp_path / "logs" / "tasks.jsonl").open()]
    if allow:
        assert {k: s for k, (s, _) in outcomes.items()} == dict.fromkeys(
            [t.key for t in tasks], "done"
        )
        starts = [r for r in records if r["event"] == "start"]
        assert [r["fingerprint"] for r in starts] == ["v1", "edited", "edited"]
        return
    assert outcomes["first"][0] == "done"
    status, detail = outcomes["second"]
    assert status == "refused" and summary.failed
    assert "the code changed since the sweep started" in detail
    assert "code v1" in detail and "code edited" in detail
    assert detail.endswith("or pass --allow-code-changes") and "\n" not in detail
    assert outcomes["third"] == ("not run", "needs second, which failed")
    assert "REFUSED  second" in summary.table()
    assert [(r["task"], r["event"]) for r in records] == [
        ("first", "start"),
        ("first", "done"),
        ("second", "refused"),
    ]
    assert records[0]["git_commit"] == "0" * 40 and records[0]["fingerprint"] == "v1"


def test_a_targets_export_names_the_code_its_runs_trained_with(tmp_path):
    import pandas as pd

    from dgp_snr.report import NOT_RECORDED, runs_trained_with
    from dgp_snr.reproduction import training_records

    for name, dataset in (("solar_a", "wilson_solar"), ("solar_b", "wilson_solar"), ("x", "x")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"dataset": dataset}))
    TrainingSession.start(
        tmp_path / "solar_a", 0, "mixed", CodeState("a" * 40, False, "f")
    ).finish(10)
    records = training_records(tmp_path, pd.DataFrame({"dataset": ["wilson_solar"]}))
    assert sorted(records) == ["solar_a", "solar_b"]  # the target's datasets only
    assert records["solar_a"]["commits"] == ["aaaaaaa"]
    assert records["solar_b"]["commits"] == []  # trained before the record existed
    commits, precisions, wall = runs_trained_with(records)
    assert commits == f"aaaaaaa (1 of 2 runs partly {NOT_RECORDED})"
    assert precisions == "mixed" and wall.endswith("over 2 runs")
    assert runs_trained_with(None) == (NOT_RECORDED,) * 3
