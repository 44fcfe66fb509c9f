"""The autograder against attack submissions (tests/grading_attacks): every attack scores 0
on the questions it targets, the honest questions keep their points, nothing hangs."""

from __future__ import annotations

import time

import pytest

from course_lib.grading import cli, grader, isolation
from course_lib.grading.notebook import SubmissionError
from tests.grading_attacks import ATTACK_LIMITS, attacks

ATTACKS = attacks()
GRADED = [a for a in ATTACKS if not a.ungradable]
UNGRADABLE = [a for a in ATTACKS if a.ungradable]
MAX_SECONDS = 40  # per attack, restarts included: the grader never hangs


def _has_process_cap() -> bool:
    mode = isolation.current_mode()
    return mode.drop_to_uid or not mode.root


def test_attack_api_is_stable():
    names = [a.name for a in ATTACKS]
    assert len(names) == len(set(names)) >= 18
    for attack in ATTACKS:
        assert attack.targets and (attack.notebook is not None) != (attack.raw is not None)


@pytest.mark.parametrize(
    "attack",
    [pytest.param(a, id=a.name) for a in GRADED],
)
def test_attack_scores_zero_on_its_targets_only(attack, tmp_path):
    if attack.needs_process_cap and not _has_process_cap():
        pytest.skip("no process cap here (grading as root without an unprivileged uid): a fork bomb is not contained")
    if attack.needs_file_confinement and not isolation.current_mode().bubblewrap:
        pytest.skip("no bubblewrap here: the file system is not confined (the report's isolation says so)")
    path = attack.write(tmp_path / f"{attack.name}.ipynb")
    start = time.monotonic()
    report = grader.grade_notebook(path, limits=ATTACK_LIMITS)
    elapsed = time.monotonic() - start
    points = {q.name: (q.points, q.feedback) for q in report.questions}
    assert attack.defeated(report), points
    assert elapsed < MAX_SECONDS
    assert report.isolation == isolation.current_mode().describe()
    assert report.isolation.startswith(("bubblewrap", "subprocess+rlimits"))
    for name, text in attack.expect_feedback.items():
        assert text in points[name][1]


@pytest.mark.parametrize("attack", UNGRADABLE, ids=[a.name for a in UNGRADABLE])
def test_malformed_files_are_refused_with_one_line(attack, tmp_path, capsys):
    path = attack.write(tmp_path / f"{attack.name}.ipynb")
    with pytest.raises(SubmissionError):
        grader.grade_notebook(path, limits=ATTACK_LIMITS)
    assert cli.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bubblewrap_is_used_wherever_bwrap_itself_works():
    """The attack tests skip without bubblewrap; make sure that never hides a broken sandbox
    command line (a private /tmp hiding a virtual environment under /tmp did once)."""
    import shutil
    import subprocess

    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.skip("bubblewrap is not installed here")
    plain = subprocess.run([bwrap, "--ro-bind", "/", "/", "--unshare-net", "true"], capture_output=True)
    if plain.returncode != 0:
        pytest.skip(f"bwrap cannot run on this machine: {plain.stderr.decode(errors='replace').strip()}")
    mode = isolation.current_mode()
    assert mode.bubblewrap, mode.note
