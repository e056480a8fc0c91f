"""Print the latest full (non ``--quick``) figures of each benchmark, per device and dtype, as Markdown.

python benchmarks/report.py [--results benchmarks/results.jsonl]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import common
else:
    from . import common


def latest(path: Path, include_quick: bool = False) -> dict[str, dict]:
    """The last record of each (benchmark, device, dtype), keyed ``"benchmark, device, dtype"``."""
    records: dict[str, dict] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if include_quick or not record.get("quick"):
                key = f"{record['benchmark']}, {record['device']}, {record.get('dtype', 'float32')}"
                records[key] = record
    return records


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=common.DEFAULT_RESULTS)
    p.add_argument("--include-quick", action="store_true")
    args = p.parse_args(argv)
    parts = []
    for name, record in latest(args.results, args.include_quick).items():
        parts.append(
            f"### {name}\n\n{record['date']}, {record.get('gpu', 'no GPU')}, {record['cpu_cores']} cores, "
            f"torch {record['torch']}\n\n{common.table(record['rows'])}\n"
        )
    text = "\n".join(parts)
    print(text)
    return text


if __name__ == "__main__":
    main()
