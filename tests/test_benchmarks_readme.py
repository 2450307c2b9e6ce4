"""benchmarks/readme_summary.py: the README's Benchmarks block comes from BENCHMARKS.md, not by hand."""
import pytest

from benchmarks import readme_summary

pytestmark = pytest.mark.bench   # peer harness: `make test-bench`

MD = """# ssljax benchmarks

## Time to first step

- date: 2026-01-02 03:04
- platform: Linux x86_64 (cpu)
- cpu_count: 2
- jax: 0.10.2
- command: python -m benchmarks.startup

| start | median s |
|---|---|
| warm | 4.2 |

Notes after the table | with a pipe.

## Something else

| a | b |
|---|---|
| 1 | 2 |
"""


def test_summary_copies_named_tables_with_their_stamp(tmp_path):
  sections = readme_summary.parse_sections(MD)
  assert set(sections) == {"Time to first step", "Something else"}
  meta, table = sections["Time to first step"]
  assert meta["date"] == "2026-01-02 03:04" and meta["cpu_count"] == "2"
  assert table.splitlines() == ["| start | median s |", "|---|---|", "| warm | 4.2 |"]
  text = readme_summary.summary(MD)
  assert "**Time to first step** (date 2026-01-02 03:04, platform Linux x86_64 (cpu), cpu_count 2" in text
  assert "| warm | 4.2 |" in text and "| 1 | 2 |" not in text      # only the headline sections

  bench = tmp_path / "BENCHMARKS.md"
  bench.write_text(MD)
  readme = tmp_path / "README.md"
  readme.write_text("# x\n\n## Layout\n\ntree\n")
  readme_summary.write(str(readme), str(bench))
  first = readme.read_text()
  assert first.index("## Benchmarks") < first.index(readme_summary.START) < first.index("## Layout")
  bench.write_text(MD.replace("| warm | 4.2 |", "| warm | 3.9 |"))
  readme_summary.write(str(readme), str(bench))                   # a re-run replaces the block
  second = readme.read_text()
  assert second.count(readme_summary.START) == 1 and "| warm | 3.9 |" in second and "4.2" not in second


def test_cpu_simd_names_the_widest_vector_extension(tmp_path):
  from benchmarks import report
  info = tmp_path / "cpuinfo"
  info.write_text("flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw\n")
  assert report.cpu_simd(str(info)) == "AVX-512"
  info.write_text("flags\t\t: fpu sse2 avx avx2 fma\n")
  assert report.cpu_simd(str(info)) == "AVX2"
  assert report.cpu_simd(str(tmp_path / "missing")) == "unknown"
