"""The bad-input corpus (data/bad_inputs/): every malformed file gets the outcome its
manifest names, and the counts always balance: rows in = valid + quarantined."""

import datetime as dt
from pathlib import Path

import pytest
import yaml

from llm_eval_pipeline.core.dataset import DatasetReadError, discover_sources, ingest
from llm_eval_pipeline.core.models import ModelRegistry, ModelSpecError
from llm_eval_pipeline.core.schema import Reason
from llm_eval_pipeline_tests.conftest import write_jsonl

CORPUS = Path(__file__).parent.parent / "data" / "bad_inputs"
EXPECTED = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))
DAY = dt.date(2026, 11, 20)


def test_the_corpus_is_complete() -> None:
    files = {p.name for p in CORPUS.iterdir()} - {"expected.yaml"}
    assert files == set(EXPECTED), "every file has an expected outcome, and the reverse"
    assert len(files) >= 30


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if not n.startswith("models_")))
def test_dataset_file_gets_its_outcome(name: str) -> None:
    expected, source = EXPECTED[name], CORPUS / name
    if "error" in expected:
        with pytest.raises(DatasetReadError) as raised:
            ingest([source], DAY)
        assert str(source) in str(raised.value) and expected["error"] in str(raised.value)
        return
    result = ingest([source], DAY)
    assert result.rows_in == expected["rows_in"]
    assert result.examples.num_rows == expected["valid"]
    assert dict(result.reasons) == expected["quarantined"]
    assert result.balanced
    for row in result.quarantined.to_pylist():
        assert row["message"].startswith(f"{source} row {row['source_row']}")
        assert row["raw"] is not None, "a quarantined row keeps what was read"


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n.startswith("models_")))
def test_bad_model_registry_names_file_entry_and_field(name: str) -> None:
    with pytest.raises(ModelSpecError) as raised:
        ModelRegistry(CORPUS / name).load()
    message = str(raised.value)
    assert message.startswith(f"{CORPUS / name} models[0]")
    assert EXPECTED[name]["error"] in message


def test_a_10_mb_field_is_quarantined_not_loaded(tmp_path: Path) -> None:
    huge = {"id": "big", "prompt": "x" * 10_000_000, "references": ["y"]}
    source = write_jsonl(tmp_path / "huge.jsonl", [huge, {"prompt": "ok?", "references": ["y"]}])
    result = ingest([source], DAY)
    assert dict(result.reasons) == {Reason.FIELD_TOO_LONG: 1}
    assert result.examples.num_rows == 1 and result.balanced


def test_a_directory_named_like_a_file_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "evals.jsonl"
    folder.mkdir()
    with pytest.raises(DatasetReadError, match=str(folder)):
        ingest([folder], DAY)


def test_a_symlink_out_of_the_data_roots_is_refused(tmp_path: Path) -> None:
    outside = write_jsonl(tmp_path / "outside" / "secret.jsonl", [{"prompt": "x?"}])
    root = tmp_path / "data"
    root.mkdir()
    (root / "evals.jsonl").symlink_to(outside)
    with pytest.raises(DatasetReadError, match="outside"):
        discover_sources(root / "evals.jsonl", tmp_path / "incoming", DAY, [root])
