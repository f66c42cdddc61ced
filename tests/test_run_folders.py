"""A run folder appears only once the inputs are valid, and says how its run ended (recarch.run_status)."""
import json
import os
from pathlib import Path

import pytest

from recarch.cli import main

DATA = Path(os.environ.get("RECARCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_data = pytest.mark.skipif(not (DATA / "ml-100k" / "ml-100k.inter").exists(), reason="ml-100k not present")
SEQ = ["--set", "train.epochs=1", "--set", "train.progress=false", "--set", "cost.enabled=false",
       "--set", "model.hidden_size=8", "--set", "model.inner_size=8", "--set", "model.max_len=5"]


def _log(tmp_path, text, name="log.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("command", [["train"], ["search", "--set", "train.progress=false"]])
@pytest.mark.parametrize("text,expected", [
    ("user,item\n1,10\n", "expected a column named 'timestamp'"),
    ("user,item,timestamp\n1,10,x\n1,11,2\n", "log.csv:2"),
    ("user,item,timestamp\n1,10,1\n1,11,2\n2,10,3\n", "none of its 2 users has the 3 interactions"),
    ("user,item,timestamp\n1,10,1\n1,11,2\n1,12,3\n2,10,3\n", "no user has a training sequence"),
    ("user,item,timestamp\n" + "".join(f"{u},{10 + i},{i}\n" for u in range(5) for i in range(5)),
     "leave pop100 out of eval.protocols"),  # a catalog too small for the sampled protocol
    ("user,item,timestamp\n" + "".join(f'"u\t{u}",{i},{i}\n' for u in range(5) for i in range(30 * u, 30 * u + 30)),
     "contains a tab or newline"),  # an id that users.tsv cannot hold
])
def test_bad_sequential_logs_exit_2_and_leave_no_run_folder(tmp_path, capsys, command, text, expected):
    path = _log(tmp_path, text)
    out = tmp_path / "runs"
    assert main([*command, "--set", f"data.table.path={path}", "--out-dir", str(out), *SEQ]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_a_missing_file_leaves_no_run_folder_on_either_track(tmp_path, capsys):
    missing = str(tmp_path / "nowhere.csv")
    for command in (["train"], ["search"], ["ctr", "train"], ["ctr", "search"], ["ihas"]):
        out = tmp_path / "-".join(command)
        assert main([*command, "--set", f"data.table.path={missing}", "--out-dir", str(out)]) == 2, command
        assert "nowhere.csv" in capsys.readouterr().err
        assert not out.exists() or not any(out.iterdir()), command


def test_short_users_are_counted_in_the_log(tmp_path):
    rows = ["user,item,timestamp"] + [f"{u},{10 + i},{i}" for u in range(1, 6) for i in range(5)] + ["9,10,1", "9,11,2"]
    path = _log(tmp_path, "\n".join(rows) + "\n")
    assert main(["train", "--set", f"data.table.path={path}", "--out-dir", str(tmp_path / "runs"), *SEQ,
                 "--set", "eval.protocols=[full]", "--set", "train.valid_protocol=full"]) == 0
    (run_dir,) = list((tmp_path / "runs").iterdir())
    assert "1 users with fewer than 3 train only (not validated or tested)" in (run_dir / "log.txt").read_text()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "finished"
    from recarch.cost.report import git_commit  # the code that ran it, as the results record it

    assert status["commit"] == git_commit() and (status["commit"] is None or len(status["commit"]) >= 40)


@needs_data
def test_a_run_that_fails_later_is_marked_failed_and_exits_non_zero(tmp_path, capsys, monkeypatch):
    from recarch.failures import TrainingDiverged
    from recarch.train import Trainer

    def diverge(self, epoch):
        if epoch == 2:
            raise TrainingDiverged(f"loss is nan at epoch {epoch}, step 3")
        return real(self, epoch)

    real = Trainer.train_epoch
    monkeypatch.setattr(Trainer, "train_epoch", diverge)
    out = tmp_path / "runs"
    assert main(["--data-dir", str(DATA), "train", "--dataset", "ml-100k", "--out-dir", str(out), *SEQ,
                 "--set", "train.epochs=3"]) == 1
    assert "training diverged: loss is nan at epoch 2, step 3" in capsys.readouterr().err
    (run_dir,) = list(out.iterdir())
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and "epoch 2, step 3" in status["error"]
    assert (run_dir / "checkpoints" / "best.pt").exists() and not (run_dir / "metrics.json").exists()


def test_every_epoch_is_a_row_of_metrics_csv(tmp_path):
    import csv

    rows = ["user,item,timestamp"] + [f"{u},{10 + (u + i) % 7},{i}" for u in range(1, 9) for i in range(6)]
    path = _log(tmp_path, "\n".join(rows) + "\n")
    assert main(["train", "--set", f"data.table.path={path}", "--out-dir", str(tmp_path / "runs"), *SEQ,
                 "--set", "train.epochs=3", "--set", "eval.protocols=[full]", "--set", "train.valid_protocol=full"]) == 0
    (run_dir,) = list((tmp_path / "runs").iterdir())
    with open(run_dir / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    history = json.loads((run_dir / "history.json").read_text())
    assert [int(r["epoch"]) for r in table] == [1, 2, 3]
    assert [float(r["valid_ndcg@10"]) for r in table] == pytest.approx([h["valid_ndcg@10"] for h in history])


def test_list_values_spread_over_indexed_columns(tmp_path):
    from recarch.io import write_csv_atomic

    write_csv_atomic(tmp_path / "m.csv", [{"epoch": 1, "alpha": [0.25, 0.75]}, {"epoch": 2, "alpha": [0.5, 0.5], "tau": 0.9}])
    assert (tmp_path / "m.csv").read_text() == "epoch,alpha[0],alpha[1],tau\n1,0.25,0.75,\n2,0.5,0.5,0.9\n"


@needs_data
def test_a_run_stopped_before_its_first_checkpoint_resumes_from_the_beginning(tmp_path, monkeypatch):
    from recarch.train import Trainer

    class Killed(BaseException):
        pass

    def killed(self, epoch):
        raise Killed

    args = ["--data-dir", str(DATA), "train", "--dataset", "ml-100k", *SEQ, "--set", "train.epochs=2"]
    assert main(args + ["--out-dir", str(tmp_path / "whole")]) == 0
    real = Trainer.train_epoch
    monkeypatch.setattr(Trainer, "train_epoch", killed)
    with pytest.raises(Killed):
        main(args + ["--out-dir", str(tmp_path / "cut")])
    monkeypatch.setattr(Trainer, "train_epoch", real)
    (cut,) = list((tmp_path / "cut").iterdir())
    assert not (cut / "checkpoints" / "last.pt").exists()
    assert main(["--data-dir", str(DATA), "train", "--resume", str(cut)]) == 0
    (whole,) = list((tmp_path / "whole").iterdir())
    assert json.loads((cut / "metrics.json").read_text())["test"] == json.loads((whole / "metrics.json").read_text())["test"]


def test_tensorboard_holds_every_epochs_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from recarch.train.scalars import scalars

    assert scalars({"epoch": 1, "loss": 2.5, "alpha": [0.25, 0.75], "chosen": "x", "tau": float("nan")}) == \
        {"epoch": 1.0, "loss": 2.5, "alpha/0": 0.25, "alpha/1": 0.75}
    rows = ["user,item,timestamp"] + [f"{u},{10 + (u + i) % 7},{i}" for u in range(1, 9) for i in range(6)]
    path = _log(tmp_path, "\n".join(rows) + "\n")
    assert main(["train", "--set", f"data.table.path={path}", "--out-dir", str(tmp_path / "runs"), *SEQ,
                 "--set", "train.epochs=3", "--set", "eval.protocols=[full]", "--set", "train.valid_protocol=full"]) == 0
    (run_dir,) = list((tmp_path / "runs").iterdir())
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    history = json.loads((run_dir / "history.json").read_text())
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3]
    assert [e.value for e in events.Scalars("valid_ndcg@10")] == pytest.approx([h["valid_ndcg@10"] for h in history])


def test_a_teacher_must_be_a_finished_run_on_the_same_data_before_a_student_run_folder_appears(tmp_path, capsys):
    rows = "user,item,timestamp\n" + "".join(f"{u},{10 + (u + i) % 7},{i}\n" for u in range(1, 9) for i in range(6))
    full = ["--set", "eval.protocols=[full]", "--set", "train.valid_protocol=full"]
    teacher_runs, students = tmp_path / "teacher", tmp_path / "students"
    assert main(["train", "--set", f"data.table.path={_log(tmp_path, rows)}", "--out-dir", str(teacher_runs),
                 *SEQ, *full]) == 0
    (teacher,) = list(teacher_runs.iterdir())
    _log(tmp_path, rows.replace("\n1,", "\n99,"), "other.csv")
    for table, source, expected in [("log.csv", tmp_path / "nowhere", "is not a finished run"),
                                    ("other.csv", teacher, "was trained on other data (data.table)")]:
        assert main(["train", "--set", f"data.table.path={tmp_path / table}", "--out-dir", str(students), *SEQ,
                     *full, "--set", f"distill.teacher={source}"]) == 2
        err = capsys.readouterr().err
        assert f"distill.teacher: {source}" in err and expected in err, err
        assert not students.exists() or not any(students.iterdir())
    assert main(["train", "--set", f"data.table.path={tmp_path / 'log.csv'}", "--out-dir", str(students), *SEQ,
                 *full, "--set", f"distill.teacher={teacher}", "--set", "distill.alpha=0.7"]) == 0
    (student,) = list(students.iterdir())
    assert f"distilled from {teacher} (α = 0.7)" in (student / "log.txt").read_text()
