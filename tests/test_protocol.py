"""Which runs enter Table 1 and Figure 4: the reference's rule (per dataset, the first N splits
whose runs all reached the protocol's iterations), the preview flag, and the figure
definitions of the paper's runs."""

import io

import numpy as np
import pytest

from dgp_snr import protocol
from dgp_snr.figure_data import figure_data_path, read_figure_data
from dgp_snr.plotting import MissingInputsError, figure_8, figure_9, table_1
from dgp_snr.protocol import evaluate_target, paper_config, select_splits
from dgp_snr.runs import CHECKPOINT_DIR, RunCheckpoints, build_run, save_config

ITERATIONS = 100
#: split -> (REG run's checkpoint step, DReG run's); None: no run folder
LAYOUT = {
    0: (100, 100),  # both finished: enters
    1: (100, 50),  # DReG unfinished: skipped (enters with --preview)
    2: (None, 100),  # REG missing: skipped
    3: (100, 100),  # both finished: enters (the second split)
    4: (100, 100),  # both finished, but two splits are already chosen
}


def _config(results, split, estimator):
    config = paper_config(
        "demo_normalized",
        split,
        2,
        estimator=estimator,
        results_path=results,
        iterations=ITERATIONS,
    )
    return config.with_settings(M=8)


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """The layout as files only: each run's config.json and empty checkpoint files named for
    its step (split selection reads names, never contents)."""
    results = tmp_path_factory.mktemp("layout")
    for split, steps in LAYOUT.items():
        for estimator, step in zip(("reg", "dreg"), steps):
            if step is None:
                continue
            config = _config(results, split, estimator)
            save_config(config, config.run_dir())
            checkpoints = config.run_dir() / CHECKPOINT_DIR
            checkpoints.mkdir()
            for suffix in (".index", ".data-00000-of-00001"):
                (checkpoints / f"ckpt-{step}{suffix}").touch()
    return results


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Tiny real runs (M = 8, untrained) with checkpoints at the layout's steps, for the
    evaluation (splits 0, 1 and 3: the ones Table 1 evaluates, with and without preview)."""
    results = tmp_path_factory.mktemp("results")
    for split in (0, 1, 3):
        for estimator, step in zip(("reg", "dreg"), LAYOUT[split]):
            config = _config(results, split, estimator)
            _, trainer, _ = build_run(config)
            trainer.step.assign(step)
            save_config(config, config.run_dir())
            RunCheckpoints(trainer, config.run_dir()).save()
    return results


def test_selection_takes_the_first_splits_whose_runs_all_finished(layout):
    results = layout
    selection = select_splits("table_1", results, ["demo_normalized"], 2, ITERATIONS)
    assert selection.used == {"demo_normalized": [0, 3]}
    assert [(r.split, r.flag, r.step) for r in selection.runs] == [
        (0, False, 100),
        (0, True, 100),
        (3, False, 100),
        (3, True, 100),
    ]
    skipped = dict(selection.skipped["demo_normalized"])
    assert sorted(skipped) == [1, 2]
    assert f"{_config(results, 1, 'dreg').run_name} stopped at step 50" in skipped[1]
    assert f"{_config(results, 2, 'reg').run_name} has no checkpoint" in skipped[2]
    assert selection.unfinished_used == []
    # more splits wanted than finished pairs: all three, and the short count
    wide = select_splits("table_1", results, ["demo_normalized"], 5, ITERATIONS)
    assert wide.used == {"demo_normalized": [0, 3, 4]} and wide.short("demo_normalized") == 2
    missing = [r.config.run_name for r in protocol.missing_runs(wide, results)]
    assert missing == [_config(results, 1, "dreg").run_name, _config(results, 2, "reg").run_name]


def test_preview_lets_unfinished_runs_in_at_their_latest_checkpoint(layout):
    results = layout
    selection = select_splits("table_1", results, ["demo_normalized"], 2, ITERATIONS, preview=True)
    assert selection.used == {"demo_normalized": [0, 1]}
    assert [(r.split, r.flag, r.step) for r in selection.runs][2:] == [
        (1, False, 100),
        (1, True, 50),
    ]
    assert [r.config.run_name for r in selection.unfinished_used] == [
        _config(results, 1, "dreg").run_name
    ]
    assert selection.describe()[0].startswith("PREVIEW: unfinished runs")


def test_table_1_marks_preview_data_on_every_output(results, tmp_path):
    kwargs = dict(
        datasets=["demo_normalized"],
        splits=2,
        iterations=ITERATIONS,
        num_predictive_samples=20,
        repeats=1,
        elbo_repeats=1,
        log=lambda *_: None,
    )
    finished = evaluate_target("table_1", results, **kwargs)
    assert [
        (r.dataset, r.flag, r.split)
        for r in read_figure_data(figure_data_path(results, "table_1_tll"))
    ] == [("demo_normalized", f, s) for s in (0, 3) for f in (False, True)]
    out = io.StringIO()
    report = table_1(
        results, tmp_path, datasets=["demo_normalized"], splits=2, iterations=ITERATIONS, out=out
    )
    assert "PREVIEW" not in report.text and "PREVIEW" not in out.getvalue()

    preview = evaluate_target("table_1", results, preview=True, **kwargs)
    assert len(preview.evaluated) == 4 and len(finished.evaluated) == 4
    for name in ("table_1_tll", "table_1_elbo"):
        assert "# PREVIEW: unfinished runs" in figure_data_path(results, name).read_text()
        splits = {r.split for r in read_figure_data(figure_data_path(results, name))}
        assert splits == {0, 1}
    out = io.StringIO()
    report = table_1(
        results, tmp_path, datasets=["demo_normalized"], splits=2, iterations=ITERATIONS, out=out
    )
    assert report.text.startswith("PREVIEW: unfinished runs")
    assert "PREVIEW: Wilcoxon" in report.text
    assert (tmp_path / "table_1.txt").read_text().startswith("PREVIEW: unfinished runs")
    assert np.all(np.isfinite([v for r in preview.evaluated for v in r.test_ll]))


def test_missing_input_commands_name_the_reference_runs(tmp_path):
    """Figure 8: the split-1 runs of the seven Figure 3 datasets; Figure 9: batch size 1 from
    data point 0 only."""
    out = io.StringIO()
    with pytest.raises(MissingInputsError):
        figure_8(tmp_path, tmp_path / "figs", out=out)
    text = out.getvalue()
    for dataset in protocol.FIGURE_3_DATASETS:
        assert f"{dataset}_L1_G5_IWAE_SF1_K50_BS64_reg " in text
        assert f"{dataset}_L1_G5_IWAE_SF0_K50_BS64_reg " not in text
    out = io.StringIO()
    with pytest.raises(MissingInputsError):
        figure_9(tmp_path, tmp_path / "figs", out=out)
    assert "--batch_size 1 --num_datapoints 1 " in out.getvalue()
