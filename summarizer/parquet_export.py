"""records.parquet: the CSV's columns with lists as typed list and struct columns.

pyarrow is the optional 'parquet' extra, so it is imported only when a file is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .export import COLUMNS, row
from .extras import require_extra
from .schemas import Result

# Parquet holds lists as lists: the CSV's "; "-joined and JSON-string columns become typed
# list and struct columns (queried in DuckDB or polars without parsing), the rest as in the CSV.
_JSON_COLUMNS = ("datasets_json", "claims_json")
_LIST_COLUMNS = ("authors", "secondary_categories", "review_reasons", "warnings")


def parquet_schema() -> Any:
    import pyarrow as pa

    types = {"string": pa.string(), "bool": pa.bool_(), "int64": pa.int64(), "float64": pa.float64()}
    nested = {
        **{name: pa.list_(pa.string()) for name in _LIST_COLUMNS},
        "datasets": pa.list_(pa.struct([("name", pa.string()), ("role", pa.string()), ("evidence", pa.string())])),
        "claims": pa.list_(pa.struct([("statement", pa.string()), ("evidence", pa.string())])),
    }
    return pa.schema([(name, nested.get(name, types[kind])) for name, kind in COLUMNS if name not in _JSON_COLUMNS])


def parquet_row(result: Result) -> dict[str, Any]:
    r = result.record
    flat = {k: v for k, v in row(result).items() if k not in _JSON_COLUMNS}
    return flat | {
        "authors": result.source.authors if result.source else None,
        "secondary_categories": r.category.secondary,
        "review_reasons": r.review_reasons,
        "warnings": r.warnings,
        "datasets": [d.model_dump() for d in r.datasets],
        "claims": [c.model_dump() for c in r.claims],
    }


def to_parquet(results: Sequence[Result]) -> bytes:
    """The records as a Parquet file; MissingExtra (one line naming the extra) without pyarrow."""
    require_extra("parquet", "Parquet export")
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([parquet_row(r) for r in results], schema=parquet_schema())
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())
