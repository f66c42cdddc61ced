"""The README's "From Python" example runs as written (from a folder holding the repository's configs)."""
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RECARCH_DATA", ROOT.parent / "shared" / "data"))


@pytest.mark.skipif(not (DATA / "ml-100k" / "ml-100k.inter").exists(), reason="ml-100k not present")
def test_the_readme_python_example_trains_searches_and_exports(tmp_path, monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## From Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.setenv("RECARCH_DATA", str(DATA))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    exec(compile(code, "README.md (From Python)", "exec"), {})
    for name in ("sasrec/metrics.json", "search/arch.json", "search/summary.json", "search/retrain/export/program.pt2"):
        assert (tmp_path / "runs" / "py" / name).exists(), name
    assert "runs/py/search/retrain/export" in capsys.readouterr().out
