"""Write one part of the labelled faithfulness data as JSON Lines, for
``llm-eval validate-metric``:

    .venv/bin/python -m llm_eval_pipeline.data test > test.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys

from llm_eval_pipeline.data import DEV, TEST, labelled_rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llm_eval_pipeline.data")
    parser.add_argument("split", choices=(DEV, TEST, "all"))
    split = parser.parse_args(argv).split
    for row in labelled_rows(None if split == "all" else split):
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
