"""Copies the headline benchmark tables from BENCHMARKS.md into README.md (issue #10).

  python -m benchmarks.readme_summary

The README's "Benchmarks" section sits between `benchmarks-summary` markers and is rewritten from
the sections named in SECTIONS, each with the date and machine its script stamped on it; nothing
is typed by hand. `make bench` and `make bench-more` run this last.
"""
from __future__ import annotations

import os
import re

from benchmarks import report

README = os.path.join(report.ROOT, "README.md")
START, END = "<!-- benchmarks-summary:start -->", "<!-- benchmarks-summary:end -->"
SECTIONS = ("Train-step throughput vs lightly", "XLA:CPU library fusions",
            "Data pipeline vs torchvision", "End to end vs lightly (pipeline + step)",
            "Time to accuracy vs lightly", "Time to first step")
STAMP_KEYS = ("date", "platform", "cpu_count", "cpu_simd", "jax", "command")


def parse_sections(text: str) -> dict[str, tuple[dict[str, str], str]]:
  """title -> (stamp key/values, first markdown table) of every `## title` section of BENCHMARKS.md."""
  out = {}
  for m in re.finditer(r"^## (.+?)\n(.*?)(?=^## |\Z)", text, re.S | re.M):
    body = m.group(2)
    meta = dict(re.findall(r"^- ([^:\n]+): (.*)$", body, re.M))
    table = re.search(r"((?:^\|.*\|\n?)+)", body, re.M)
    out[m.group(1).strip()] = (meta, table.group(1).strip() if table else "")
  return out


def summary(benchmarks_md: str) -> str:
  """The README block: one sub-heading, stamp line and table per section present."""
  sections = parse_sections(benchmarks_md)
  parts = ["Headline tables from [BENCHMARKS.md](BENCHMARKS.md) (its full sections say how each was "
           "measured; ratios > 1 mean ssljax is faster). Re-measure with `make bench` (the side-by-side ones) / `make bench-more`."]
  for title in SECTIONS:
    if title not in sections or not sections[title][1]:
      continue
    meta, table = sections[title]
    stamp = ", ".join(f"{k} {meta[k]}" for k in STAMP_KEYS if k in meta)
    parts.append(f"**{title}** ({stamp})\n\n{table}")
  return "\n\n".join(parts)


def write(readme: str = README, benchmarks_md: str = report.DEFAULT_PATH) -> str:
  block = f"{START}\n{summary(open(benchmarks_md).read())}\n{END}"
  text = open(readme).read()
  if START in text:
    text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
  else:
    text = text.replace("\n## Layout\n", f"\n## Benchmarks\n\n{block}\n\n## Layout\n", 1)
  with open(readme, "w") as f:
    f.write(text)
  return block


if __name__ == "__main__":
  print(write())
