"""Every table and column name of the pipeline, and each table's Arrow schema.

This is the one module that spells them; other modules refer to ``Col.PROMPT`` or
``EVAL_EXAMPLES.name``. Schemas are Arrow schemas (pure data, no Spark); the Spark and
Dagster views of a table are derived from these.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from llm_eval_pipeline.core.metrics.registry import METRICS, SCORED_GROUPS, names
from llm_eval_pipeline.core.metrics.rouge import ROUGE_TYPES
from llm_eval_pipeline.core.metrics.spec import GEOMETRIC, LOWER, NEITHER


class Col:
    """Column names."""

    EXAMPLE_ID = "example_id"
    DATASET = "dataset"
    TASK = "task"
    PROMPT = "prompt"
    REFERENCES = "references"
    CONTEXT = "context"
    METADATA = "metadata"
    EVAL_DATE = "eval_date"
    SOURCE_FILE = "source_file"
    SOURCE_ROW = "source_row"
    MODEL_ID = "model_id"
    # generations
    OUTPUT = "output"
    PROMPT_TOKENS = "prompt_tokens"
    OUTPUT_TOKENS = "output_tokens"
    LATENCY_MS = "latency_ms"
    OUTPUT_LOGPROB = "output_logprob"
    OUTPUT_LOGPROB_TOKENS = "output_logprob_tokens"
    FINISH_REASON = "finish_reason"
    ERROR = "error"
    GENERATION_CONFIG_HASH = "generation_config_hash"
    # quarantine
    FIELD = "field"
    REASON = "reason"
    MESSAGE = "message"
    RAW = "raw"


TASKS: tuple[str, ...] = ("qa", "summarization", "open")
"""Kinds of example. ``qa`` and ``summarization`` need references; ``open`` may omit them."""

TASKS_NEEDING_REFERENCES: frozenset[str] = frozenset({"qa", "summarization"})

FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    Col.PROMPT: ("prompt", "question", "input", "instruction"),
    Col.REFERENCES: ("references", "reference", "answers", "answer", "target", "targets"),
    Col.CONTEXT: ("context", "passage", "document"),
    Col.TASK: ("task",),
    Col.METADATA: ("metadata",),
}
"""Accepted source names for each normalised field, in order of preference."""

SOURCE_ID_FIELDS: tuple[str, ...] = ("id", "example_id", "uid")
"""A source's own row id, kept in ``metadata["source_id"]``; duplicates within a day are
rejected."""

SOURCE_ID_KEY = "source_id"


class Reason:
    """Why a row went to quarantine (the ``reason`` column)."""

    UNPARSABLE = "unparsable"
    NOT_A_RECORD = "not_a_record"
    MALFORMED_ROW = "malformed_row"
    INVALID_ENCODING = "invalid_encoding"
    MISSING_FIELD = "missing_field"
    EMPTY_FIELD = "empty_field"
    WRONG_TYPE = "wrong_type"
    FIELD_TOO_LONG = "field_too_long"
    CONTROL_CHARACTERS = "control_characters"
    UNKNOWN_TASK = "unknown_task"
    DUPLICATE_EXAMPLE = "duplicate_example"
    DUPLICATE_ID = "duplicate_id"


@dataclass(frozen=True)
class TableSpec:
    """A Delta table: its name (also its folder under ``LLM_EVAL_HOME/delta``), schema,
    partition columns and a description per column."""

    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...]
    description: str
    column_docs: dict[str, str]

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)


_STRING_MAP = pa.map_(pa.string(), pa.string())

EVAL_EXAMPLES = TableSpec(
    name="eval_examples",
    schema=pa.schema(
        [
            (Col.EXAMPLE_ID, pa.string()),
            (Col.DATASET, pa.string()),
            (Col.TASK, pa.string()),
            (Col.PROMPT, pa.string()),
            (Col.REFERENCES, pa.list_(pa.string())),
            (Col.CONTEXT, pa.string()),
            (Col.METADATA, _STRING_MAP),
            (Col.SOURCE_FILE, pa.string()),
            (Col.SOURCE_ROW, pa.int64()),
            (Col.EVAL_DATE, pa.date32()),
        ]
    ),
    partition_by=(Col.EVAL_DATE,),
    description="Validated evaluation examples, one row per example per day.",
    column_docs={
        Col.EXAMPLE_ID: "Stable content hash of task, prompt, context and references.",
        Col.DATASET: "Dataset name (configured, or the source file's stem).",
        Col.TASK: "qa | summarization | open.",
        Col.PROMPT: "The question or instruction given to the model.",
        Col.REFERENCES: "Accepted answers or reference summaries.",
        Col.CONTEXT: "Passage the prompt refers to, if any.",
        Col.METADATA: "Other source fields, as strings (the source id as source_id).",
        Col.SOURCE_FILE: "File or Delta table the row came from.",
        Col.SOURCE_ROW: "1-based line (JSONL, CSV) or row (Parquet, Delta, JSON array).",
        Col.EVAL_DATE: "The day partition.",
    },
)

QUARANTINED_EXAMPLES = TableSpec(
    name="quarantined_examples",
    schema=pa.schema(
        [
            (Col.DATASET, pa.string()),
            (Col.SOURCE_FILE, pa.string()),
            (Col.SOURCE_ROW, pa.int64()),
            (Col.FIELD, pa.string()),
            (Col.REASON, pa.string()),
            (Col.MESSAGE, pa.string()),
            (Col.RAW, pa.string()),
            (Col.EVAL_DATE, pa.date32()),
        ]
    ),
    partition_by=(Col.EVAL_DATE,),
    description="Rows that failed validation, with the reason and the raw text.",
    column_docs={
        Col.DATASET: "Dataset name the row was meant for.",
        Col.SOURCE_FILE: "File or Delta table the row came from.",
        Col.SOURCE_ROW: "1-based line (JSONL, CSV) or row (Parquet, Delta, JSON array).",
        Col.FIELD: "The offending field, or empty when the whole row is at fault.",
        Col.REASON: "Machine-readable reason (see core.schema.Reason).",
        Col.MESSAGE: "Human-readable message naming file, row and field.",
        Col.RAW: "The row as it came in (undecodable bytes as backslash escapes).",
        Col.EVAL_DATE: "The day partition.",
    },
)

GENERATIONS = TableSpec(
    name="generations",
    schema=pa.schema(
        [
            (Col.EXAMPLE_ID, pa.string()),
            (Col.OUTPUT, pa.string()),
            (Col.PROMPT_TOKENS, pa.int64()),
            (Col.OUTPUT_TOKENS, pa.int64()),
            (Col.LATENCY_MS, pa.float64()),
            (Col.FINISH_REASON, pa.string()),
            (Col.ERROR, pa.string()),
            (Col.OUTPUT_LOGPROB, pa.float64()),
            (Col.OUTPUT_LOGPROB_TOKENS, pa.int64()),
            (Col.GENERATION_CONFIG_HASH, pa.string()),
            (Col.EVAL_DATE, pa.date32()),
            (Col.MODEL_ID, pa.string()),
        ]
    ),
    partition_by=(Col.EVAL_DATE, Col.MODEL_ID),
    description="One model output per example, day and model.",
    column_docs={
        Col.EXAMPLE_ID: "The example (eval_examples.example_id).",
        Col.OUTPUT: "The model's output, stop strings removed; null when the row failed.",
        Col.PROMPT_TOKENS: "Tokens in the templated prompt (null when the backend cannot say).",
        Col.OUTPUT_TOKENS: "Tokens generated, up to the stop.",
        Col.LATENCY_MS: (
            "Time the row cost: its request's wall time (remote backends), or its share of "
            "its batch's wall time (local batched models)."
        ),
        Col.FINISH_REASON: "stop | length | error.",
        Col.ERROR: "Why this row failed; null when it succeeded.",
        Col.OUTPUT_LOGPROB: (
            "Sum of the natural log-probabilities of the output tokens, as an API endpoint "
            "returned them (openai backend); null when the backend gives none."
        ),
        Col.OUTPUT_LOGPROB_TOKENS: "How many token log-probabilities output_logprob sums.",
        Col.GENERATION_CONFIG_HASH: "Hash of the backend identity and generation parameters.",
        Col.EVAL_DATE: "The day partition.",
        Col.MODEL_ID: "The model partition (the registry name).",
    },
)

METRIC_COLUMNS: dict[str, tuple[str, ...]] = {group: names(group) for group in SCORED_GROUPS}
"""Metric columns by group, from the metric registry (``core.metrics.registry``); every
one is a float64, null where it cannot be computed (the reason is in ``metric_notes``)."""
ALL_METRIC_COLUMNS: tuple[str, ...] = tuple(c for cols in METRIC_COLUMNS.values() for c in cols)
METRIC_NOTES = "metric_notes"
METRIC_CONFIG_HASH = "metric_config_hash"

EXAMPLE_METRICS = TableSpec(
    name="example_metrics",
    schema=pa.schema(
        [
            (Col.EXAMPLE_ID, pa.string()),
            *((name, pa.float64()) for name in ALL_METRIC_COLUMNS),
            (METRIC_NOTES, _STRING_MAP),
            (METRIC_CONFIG_HASH, pa.string()),
            (Col.GENERATION_CONFIG_HASH, pa.string()),
            (Col.EVAL_DATE, pa.date32()),
            (Col.MODEL_ID, pa.string()),
        ]
    ),
    partition_by=(Col.EVAL_DATE, Col.MODEL_ID),
    description="Every metric for every generated output, per day and model.",
    column_docs={
        Col.EXAMPLE_ID: "The example (eval_examples.example_id).",
        **{
            name: f"{METRICS[name].definition} ({group})"
            for group, cols in METRIC_COLUMNS.items()
            for name in cols
        },
        METRIC_NOTES: "Why a metric group is null for this row, by group.",
        METRIC_CONFIG_HASH: "Hash of the metric configuration.",
        Col.GENERATION_CONFIG_HASH: "The generation config the output came from.",
        Col.EVAL_DATE: "The day partition.",
        Col.MODEL_ID: "The model partition.",
    },
)

OPERATIONAL_METRICS: tuple[str, ...] = names("operational")
"""Aggregated like the metrics, from ``generations`` (see ``core.metrics.operational``)."""
LOWER_IS_BETTER: frozenset[str] = frozenset(m for m, s in METRICS.items() if s.better == LOWER)
NEUTRAL_METRICS: frozenset[str] = frozenset(m for m, s in METRICS.items() if s.better == NEITHER)
GEOMETRIC_METRICS: frozenset[str] = frozenset(
    m for m, s in METRICS.items() if s.aggregation == GEOMETRIC
)
"""Derived from the registry: the metrics where smaller is better, those with no better
direction, and those aggregated by their geometric mean."""
HEADLINE_METRICS: tuple[str, ...] = (
    "rougeL",
    "answer_correctness",
    "hallucination_index",
    "reference_perplexity",
    "error_rate",
)
"""The metrics a leaderboard shows first."""

PRIMARY_METRICS: tuple[str, ...] = (
    "answer_correctness",
    "hallucination_index",
    "hallucinated",
    "judge_correctness",
    "semantic_similarity",
    "token_f1",
    "exact_match",
    *ROUGE_TYPES,
    "reference_perplexity",
    "output_perplexity",
)
"""The quality metrics the dashboard draws and MLflow charts, in order (the components
behind them stay in the tables)."""


class Agg:
    """Column names of ``metric_aggregates``."""

    METRIC = "metric"
    COUNT = "count"
    MEAN = "mean"
    STD = "std"
    P50 = "p50"
    P90 = "p90"
    P95 = "p95"
    CI_LOW = "ci_low"
    CI_HIGH = "ci_high"
    ROWS = "rows"
    EXAMPLES_VERSION = "examples_version"
    GENERATIONS_VERSION = "generations_version"
    METRICS_VERSION = "metrics_version"


METRIC_AGGREGATES = TableSpec(
    name="metric_aggregates",
    schema=pa.schema(
        [
            (Agg.METRIC, pa.string()),
            (Agg.COUNT, pa.int64()),
            (Agg.MEAN, pa.float64()),
            (Agg.STD, pa.float64()),
            (Agg.P50, pa.float64()),
            (Agg.P90, pa.float64()),
            (Agg.P95, pa.float64()),
            (Agg.CI_LOW, pa.float64()),
            (Agg.CI_HIGH, pa.float64()),
            (Agg.ROWS, pa.int64()),
            (METRIC_CONFIG_HASH, pa.string()),
            (Agg.EXAMPLES_VERSION, pa.int64()),
            (Agg.GENERATIONS_VERSION, pa.int64()),
            (Agg.METRICS_VERSION, pa.int64()),
            (Col.EVAL_DATE, pa.date32()),
            (Col.MODEL_ID, pa.string()),
        ]
    ),
    partition_by=(Col.EVAL_DATE, Col.MODEL_ID),
    description="One row per metric per day and model: count, mean, spread and a 95% "
    "bootstrap confidence interval of the mean.",
    column_docs={
        Agg.METRIC: "A metric column of example_metrics, or an operational metric "
        "(error_rate, latency_ms, prompt_tokens, output_tokens, tokens_per_s; cost_usd and "
        "judge_cost_usd, whose mean is the partition's total, where prices are set).",
        Agg.COUNT: "Rows with a non-null value.",
        Agg.MEAN: "Mean over those rows (geometric mean for perplexities).",
        Agg.STD: "Sample standard deviation (ddof=1; of the natural log for perplexities); "
        "null with fewer than 2 values.",
        Agg.P50: "Median.",
        Agg.P90: "90th percentile (linear interpolation).",
        Agg.P95: "95th percentile (linear interpolation).",
        Agg.CI_LOW: "Lower bound of the seeded percentile-bootstrap 95% CI of the mean.",
        Agg.CI_HIGH: "Upper bound of that interval.",
        Agg.ROWS: "Rows in the partition (generated outputs).",
        METRIC_CONFIG_HASH: "Hash of the metric configuration the metrics came from.",
        Agg.EXAMPLES_VERSION: "Delta version of eval_examples read.",
        Agg.GENERATIONS_VERSION: "Delta version of generations read.",
        Agg.METRICS_VERSION: "Delta version of example_metrics read.",
        Col.EVAL_DATE: "The day partition.",
        Col.MODEL_ID: "The model partition.",
    },
)


class Slc:
    """Column names of ``metric_slices`` (beside ``Agg.METRIC``, ``COUNT``, ``MEAN``,
    ``CI_LOW`` and ``CI_HIGH``)."""

    KEY = "slice_key"
    VALUE = "slice_value"
    BASELINE_MEAN = "baseline_mean"
    DIFF = "diff"
    DIFF_CI_LOW = "diff_ci_low"
    DIFF_CI_HIGH = "diff_ci_high"
    P_VALUE = "p_value"
    Q_VALUE = "q_value"
    MDE = "mde"
    N_NEEDED = "n_needed"
    VERDICT = "verdict"


METRIC_SLICES = TableSpec(
    name="metric_slices",
    schema=pa.schema(
        [
            (Slc.KEY, pa.string()),
            (Slc.VALUE, pa.string()),
            (Agg.METRIC, pa.string()),
            (Agg.COUNT, pa.int64()),
            (Agg.MEAN, pa.float64()),
            (Agg.CI_LOW, pa.float64()),
            (Agg.CI_HIGH, pa.float64()),
            (Slc.BASELINE_MEAN, pa.float64()),
            (Slc.DIFF, pa.float64()),
            (Slc.DIFF_CI_LOW, pa.float64()),
            (Slc.DIFF_CI_HIGH, pa.float64()),
            (Slc.P_VALUE, pa.float64()),
            (Slc.Q_VALUE, pa.float64()),
            (Slc.MDE, pa.float64()),
            (Slc.N_NEEDED, pa.float64()),
            (Slc.VERDICT, pa.string()),
            (Col.EVAL_DATE, pa.date32()),
            (Col.MODEL_ID, pa.string()),
        ]
    ),
    partition_by=(Col.EVAL_DATE, Col.MODEL_ID),
    description="Every metric on every slice of a day×model (all, task, slice_by metadata "
    "fields, prompt length tercile, recurring vs new examples), with its interval and a "
    "paired test against the baseline on the same examples.",
    column_docs={
        Slc.KEY: "What the slice is cut by: all, task, a metadata field, prompt_length, recurring.",
        Slc.VALUE: "The slice's value of that key; (missing) where a row has none.",
        Agg.METRIC: "A metric column of example_metrics.",
        Agg.COUNT: "Rows of the slice with a value.",
        Agg.MEAN: "Mean over them (geometric mean for perplexities).",
        Agg.CI_LOW: "Lower bound of the seeded percentile-bootstrap 95% CI of the mean.",
        Agg.CI_HIGH: "Upper bound of that interval.",
        Slc.BASELINE_MEAN: "The baseline's mean on the examples both have (geometric for "
        "perplexities); null for the baseline itself or without a baseline.",
        Slc.DIFF: "Mean paired difference, this model minus the baseline (log scale for "
        "perplexities).",
        Slc.DIFF_CI_LOW: "Lower bound of the paired-bootstrap 95% CI of the difference.",
        Slc.DIFF_CI_HIGH: "Upper bound of that interval.",
        Slc.P_VALUE: "Two-sided bootstrap p-value of the difference; null for slices under "
        "min_slice_size (no test; the slice all is tested from 2 pairs).",
        Slc.Q_VALUE: "Benjamini-Hochberg adjusted p-value over every test of the partition.",
        Slc.MDE: "Smallest difference detectable at 80% power and the 5% level, from the "
        "paired standard deviation and the pairs.",
        Slc.N_NEEDED: "Pairs needed for the mde to come down to the margin (then a "
        "regression of twice the margin is called one at least 80% of the time).",
        Slc.VERDICT: "regression | improvement | no_change | inconclusive (see "
        "core.aggregate.verdict; a regression or improvement must survive BH); null for the "
        "baseline or without one.",
        Col.EVAL_DATE: "The day partition.",
        Col.MODEL_ID: "The model partition.",
    },
)


class Drift:
    """Column names of ``input_drift``."""

    TEST = "test"
    STATISTIC = "statistic"
    P_VALUE = "p_value"
    THRESHOLD = "threshold"
    DRIFTED = "drifted"
    DETAIL = "detail"
    PREVIOUS_DATE = "previous_date"


INPUT_DRIFT = TableSpec(
    name="input_drift",
    schema=pa.schema(
        [
            (Drift.TEST, pa.string()),
            (Drift.STATISTIC, pa.float64()),
            (Drift.P_VALUE, pa.float64()),
            (Drift.THRESHOLD, pa.float64()),
            (Drift.DRIFTED, pa.bool_()),
            (Drift.DETAIL, pa.string()),
            (Drift.PREVIOUS_DATE, pa.date32()),
            (Col.EVAL_DATE, pa.date32()),
        ]
    ),
    partition_by=(Col.EVAL_DATE,),
    description="The day's eval_examples against the previous day with examples: ids "
    "added, removed and kept, and the drift tests of core.drift (task and metadata mix, "
    "prompt and reference length, prompt embeddings).",
    column_docs={
        Drift.TEST: "ids_added | ids_removed | ids_kept | task_mix | prompt_length_psi | "
        "prompt_length_ks | reference_length_psi | reference_length_ks | "
        "metadata.FIELD_mix (FIELD: each slice_by metadata field) | prompt_embedding_shift.",
        Drift.STATISTIC: "The test's figure (a count for the ids_* rows; chi-square, PSI, "
        "KS D or the distance of mean embeddings).",
        Drift.P_VALUE: "Its p-value (for PSI, by permutation); null for counts.",
        Drift.THRESHOLD: "What decides drifted: 1 - level for p-values; for PSI, the PSI "
        "threshold (and its p-value under 1 - level); null for counts.",
        Drift.DRIFTED: "Whether the test flags drift; null for counts.",
        Drift.DETAIL: "The figure in a sentence.",
        Drift.PREVIOUS_DATE: "The day compared with: the latest earlier day with examples; "
        "null on the first day (no tests, only ids_added).",
        Col.EVAL_DATE: "The day partition.",
    },
)

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        EVAL_EXAMPLES,
        QUARANTINED_EXAMPLES,
        GENERATIONS,
        EXAMPLE_METRICS,
        METRIC_AGGREGATES,
        METRIC_SLICES,
        INPUT_DRIFT,
    )
}
