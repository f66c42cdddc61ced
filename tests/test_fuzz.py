"""Every reader of both tracks on broken files: a file with the clean one's content reads to the same
arrays, a broken one reads or fails with an error naming the file (exit 2), never a crash, and a
failed CTR read leaves no cache entry (benchmarks/fuzz_inputs.py; thousands of cases in
benchmarks/bench_fuzz.py)."""
import sys
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from fuzz_inputs import READERS, cases, run_case  # noqa: E402

CASES = st.sampled_from(sorted(READERS)).flatmap(
    lambda reader: st.tuples(st.just(reader), st.sampled_from(cases(reader)), st.integers(0, 2**31 - 1)))


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(CASES)
def test_a_broken_file_reads_or_names_itself(case):
    with tempfile.TemporaryDirectory() as folder:
        outcome, detail = run_case(*case, Path(folder))
    assert outcome in ("same", "parsed", "named"), f"{case}: {outcome}: {detail}"


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_reads_its_clean_file_and_names_itself_when_empty(reader, tmp_path):
    assert run_case(reader, "empty", 0, tmp_path / "empty")[0] == "named"
    if "gzipped" in cases(reader):
        assert run_case(reader, "gzipped", 0, tmp_path / "gz")[0] == "same"
