"""Agreement between the two annotation passes, and validation of the gold and dev sets.

Run from the repository root:

    python evals/tools/agreement.py           # pass 1 vs pass 2 -> evals/labels/agreement.json + table
    python evals/tools/agreement.py --check   # validate evals/gold.jsonl and evals/dev.jsonl
    python evals/tools/agreement.py --split   # print the fixed-seed, category-stratified dev draw

Agreement is measured per field, pass 1 taken as the reference where a direction is needed:

- primary, contribution_type: percent agreement and Cohen's kappa;
- secondary: exact agreement of the category sets;
- method: exact match after Unicode (NFKC), whitespace and case normalisation; null is an
  answer of its own (null/null agrees, null/name does not);
- datasets: micro F1 over (paper, normalised name) pairs; roles are reported separately;
- claims: share of pass-1 claims whose evidence span overlaps (at least one character, after
  whitespace normalisation) some pass-2 evidence span of the same paper.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # runnable as a plain script, without PYTHONPATH
    sys.path.insert(0, str(ROOT))

from summarizer.schemas import (  # noqa: E402
    MAX_CLAIMS,
    MAX_SECONDARY,
    Paper,
    find_name,
    find_verbatim,
    normalise_ws,
    paper_id,
)
from summarizer.sources import read_inputs  # noqa: E402
from summarizer.taxonomy import load_taxonomy  # noqa: E402

LABELS = ROOT / "evals" / "labels"
PASS1 = LABELS / "pass1.jsonl"
PASS2 = LABELS / "pass2.jsonl"
AGREEMENT = LABELS / "agreement.json"
GOLD = ROOT / "evals" / "gold.jsonl"
DEV = ROOT / "evals" / "dev.jsonl"
SEEDS = ROOT / "examples" / "seeds"
TAXONOMY = ROOT / "prompts" / "taxonomy.toml"

DEV_SIZE = 12
DEV_SEED = 20240531
RECORD_KEYS = ("id", "title", "primary", "secondary", "contribution_type", "method", "datasets", "claims")
ROLES = frozenset({"introduced", "used"})

Record = dict[str, Any]


# --------------------------------------------------------------------------------------
# Loading


def read_jsonl(path: Path) -> list[Record]:
    records: list[Record] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        value = json.loads(line)
        if not isinstance(value, dict):
            raise SystemExit(f"{path}:{n}: expected a JSON object")
        records.append(value)
    return records


def by_id(records: Iterable[Record]) -> dict[str, Record]:
    out: dict[str, Record] = {}
    for record in records:
        pid = paper_id(record["title"])
        if pid in out:
            raise SystemExit(f"duplicate paper in labels: {record['title']!r}")
        out[pid] = record
    return out


def load_papers(seeds: Path = SEEDS) -> dict[str, Paper]:
    return {p.id: p for p in read_inputs(sorted(seeds.glob("*.txt")))}


# --------------------------------------------------------------------------------------
# Metrics


def norm_name(value: str) -> str:
    return normalise_ws(unicodedata.normalize("NFKC", value)).casefold()


def percent(agree: int, total: int) -> float:
    return round(100.0 * agree / total, 1) if total else 0.0


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    n = len(a)
    if n == 0 or n != len(b):
        raise ValueError("kappa needs two equally long, non-empty label lists")
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in ca.keys() | cb.keys()) / (n * n)
    return 1.0 if expected == 1 else round((observed - expected) / (1 - expected), 3)


def spans(quote: str, text: str) -> list[tuple[int, int]]:
    """Every (start, end) of `quote` in `text`, both whitespace-normalised."""
    needle, hay = normalise_ws(quote), normalise_ws(text)
    out: list[tuple[int, int]] = []
    start = hay.find(needle) if needle else -1
    while start >= 0:
        out.append((start, start + len(needle)))
        start = hay.find(needle, start + 1)
    return out


def overlaps(a: Iterable[tuple[int, int]], b: Sequence[tuple[int, int]]) -> bool:
    return any(s1 < e2 and s2 < e1 for s1, e1 in a for s2, e2 in b)


def agreement(p1: dict[str, Record], p2: dict[str, Record], papers: dict[str, Paper]) -> dict[str, Any]:
    ids = sorted(p1)
    if set(p1) != set(p2):
        raise SystemExit(f"passes cover different papers: {sorted(set(p1) ^ set(p2))}")
    n = len(ids)
    prim1, prim2 = [p1[i]["primary"] for i in ids], [p2[i]["primary"] for i in ids]
    ct1, ct2 = [p1[i]["contribution_type"] for i in ids], [p2[i]["contribution_type"] for i in ids]
    sec_agree = sum(set(p1[i]["secondary"]) == set(p2[i]["secondary"]) for i in ids)

    def method(r: Record) -> str | None:
        return None if r["method"] is None else norm_name(r["method"])

    meth_agree = sum(method(p1[i]) == method(p2[i]) for i in ids)
    both_null = sum(method(p1[i]) is None and method(p2[i]) is None for i in ids)

    tp = n1 = n2 = role_match = 0
    for i in ids:
        d1 = {norm_name(d["name"]): d["role"] for d in p1[i]["datasets"]}
        d2 = {norm_name(d["name"]): d["role"] for d in p2[i]["datasets"]}
        common = d1.keys() & d2.keys()
        tp, n1, n2 = tp + len(common), n1 + len(d1), n2 + len(d2)
        role_match += sum(d1[k] == d2[k] for k in common)
    precision = tp / n2 if n2 else 1.0
    recall = tp / n1 if n1 else 1.0
    f1 = 2 * tp / (n1 + n2) if n1 + n2 else 1.0

    claims1 = hits = 0
    for i in ids:
        abstract = papers[i].abstract
        theirs = [s for c in p2[i]["claims"] for s in spans(c["evidence"], abstract)]
        for claim in p1[i]["claims"]:
            claims1 += 1
            hits += overlaps(spans(claim["evidence"], abstract), theirs)

    differ: list[dict[str, Any]] = []
    for i in ids:
        fields = [
            f
            for f, same in (
                ("primary", p1[i]["primary"] == p2[i]["primary"]),
                ("contribution_type", p1[i]["contribution_type"] == p2[i]["contribution_type"]),
                ("method", method(p1[i]) == method(p2[i])),
            )
            if not same
        ]
        if fields:
            differ.append({"id": i, "title": papers[i].title, "fields": fields})

    return {
        "papers": n,
        "reference": "pass1",
        "primary": {
            "agree": sum(x == y for x, y in zip(prim1, prim2, strict=True)),
            "percent": percent(sum(x == y for x, y in zip(prim1, prim2, strict=True)), n),
            "kappa": cohen_kappa(prim1, prim2),
        },
        "secondary": {"exact_set_agree": sec_agree, "percent": percent(sec_agree, n)},
        "contribution_type": {
            "agree": sum(x == y for x, y in zip(ct1, ct2, strict=True)),
            "percent": percent(sum(x == y for x, y in zip(ct1, ct2, strict=True)), n),
            "kappa": cohen_kappa(ct1, ct2),
        },
        "method": {"agree": meth_agree, "percent": percent(meth_agree, n), "both_null": both_null},
        "datasets": {
            "pass1_names": n1,
            "pass2_names": n2,
            "matched": tp,
            "precision": round(precision, 3),
            "recall": round(recall, 3),
            "micro_f1": round(f1, 3),
            "role_agree_on_matched": role_match,
        },
        "claims": {
            "pass1_claims": claims1,
            "pass2_claims": sum(len(p2[i]["claims"]) for i in ids),
            "pass1_overlapping_pass2": hits,
            "overlap_share": round(hits / claims1, 3) if claims1 else 0.0,
        },
        "differ_primary_contribution_or_method": differ,
    }


def print_table(result: dict[str, Any]) -> None:
    rows = [
        ("primary", f"{result['primary']['percent']}%", f"kappa {result['primary']['kappa']}"),
        ("secondary (exact set)", f"{result['secondary']['percent']}%", ""),
        (
            "contribution_type",
            f"{result['contribution_type']['percent']}%",
            f"kappa {result['contribution_type']['kappa']}",
        ),
        ("method (normalised exact)", f"{result['method']['percent']}%", f"{result['method']['both_null']} both null"),
        (
            "datasets (micro F1)",
            f"{result['datasets']['micro_f1']}",
            f"P {result['datasets']['precision']} R {result['datasets']['recall']}",
        ),
        (
            "claims (evidence overlap)",
            f"{round(100 * result['claims']['overlap_share'], 1)}%",
            f"{result['claims']['pass1_overlapping_pass2']}/{result['claims']['pass1_claims']} pass-1 claims",
        ),
    ]
    print(f"pass 1 vs pass 2, {result['papers']} papers")
    for field, value, extra in rows:
        print(f"  {field:<28}{value:>8}  {extra}")
    differ = result["differ_primary_contribution_or_method"]
    print(f"papers where primary, contribution type or method differ: {len(differ)}")
    for row in differ:
        print(f"  {row['id']}  {','.join(row['fields']):<30} {row['title'][:70]}")


# --------------------------------------------------------------------------------------
# Dev split


def draw_dev(records: Sequence[Record], size: int = DEV_SIZE, seed: int = DEV_SEED) -> list[str]:
    """Fixed-seed, category-stratified draw of `size` ids by primary category.

    A category with a single paper is never drawn, and every category keeps at least one
    paper in gold. Quotas are proportional to category size (largest remainder, ties by
    category name); papers are drawn per category, in id order, with one seeded generator.
    """
    groups: dict[str, list[str]] = {}
    for r in records:
        groups.setdefault(r["primary"], []).append(r["id"])
    eligible = {c: sorted(ids) for c, ids in groups.items() if len(ids) >= 2}
    total = sum(len(ids) for ids in eligible.values())
    exact = {c: size * len(ids) / total for c, ids in eligible.items()}
    quota = {c: min(int(q), len(eligible[c]) - 1) for c, q in exact.items()}
    order = sorted(eligible, key=lambda c: (-(exact[c] - int(exact[c])), c))
    while sum(quota.values()) < size:
        grew = False
        for c in order:
            if sum(quota.values()) < size and quota[c] < len(eligible[c]) - 1:
                quota[c] += 1
                grew = True
        if not grew:
            raise ValueError("not enough papers for the requested dev size")
    rng = random.Random(seed)
    chosen: list[str] = []
    for c in sorted(eligible):
        chosen.extend(rng.sample(eligible[c], quota[c]))
    return sorted(chosen)


# --------------------------------------------------------------------------------------
# Validation


def check_record(r: Record, paper: Paper, categories: set[str], contributions: set[str]) -> list[str]:
    errors: list[str] = []
    abstract = paper.abstract
    if tuple(r) != RECORD_KEYS:
        errors.append(f"keys {list(r)} != {list(RECORD_KEYS)}")
    if r.get("title") != paper.title or paper_id(r.get("title", "")) != r.get("id"):
        errors.append("title does not match the seed paper / id")
    if r.get("primary") not in categories:
        errors.append(f"unknown primary {r.get('primary')!r}")
    secondary = r.get("secondary")
    if not isinstance(secondary, list) or len(secondary) > MAX_SECONDARY:
        errors.append("secondary must be a list of at most two ids")
    else:
        for s in secondary:
            if s not in categories or s == r.get("primary"):
                errors.append(f"bad secondary {s!r}")
        if len(set(secondary)) != len(secondary):
            errors.append("duplicate secondary ids")
    if r.get("contribution_type") not in contributions:
        errors.append(f"unknown contribution_type {r.get('contribution_type')!r}")
    method = r.get("method")
    if method is not None:
        if not isinstance(method, str) or find_name(method, abstract) != normalise_ws(method):
            errors.append(f"method {method!r} is not written so in the abstract")
    datasets = r.get("datasets")
    if not isinstance(datasets, list):
        errors.append("datasets must be a list")
    else:
        seen: set[str] = set()
        for d in datasets:
            if not isinstance(d, dict) or set(d) != {"name", "role"}:
                errors.append(f"dataset {d!r} must have exactly name and role")
                continue
            if find_name(d["name"], abstract) != normalise_ws(d["name"]):
                errors.append(f"dataset {d['name']!r} is not written so in the abstract")
            if d["role"] not in ROLES:
                errors.append(f"dataset {d['name']!r} has role {d['role']!r}")
            if norm_name(d["name"]) in seen:
                errors.append(f"duplicate dataset {d['name']!r}")
            seen.add(norm_name(d["name"]))
    claims = r.get("claims")
    if not isinstance(claims, list) or not 1 <= len(claims) <= MAX_CLAIMS:
        errors.append(f"claims must be a list of 1-{MAX_CLAIMS}")
    else:
        for c in claims:
            if not isinstance(c, dict) or set(c) != {"statement", "evidence"} or not str(c["statement"]).strip():
                errors.append(f"claim {c!r} must have a statement and evidence")
            elif find_verbatim(c["evidence"], abstract) is None:
                errors.append(f"evidence not verbatim: {c['evidence'][:60]!r}")
    return errors


def check(gold_path: Path, dev_path: Path, papers: dict[str, Paper], taxonomy: Path) -> int:
    tax = load_taxonomy(taxonomy)
    categories, contributions = set(tax.category_ids), set(tax.contribution_ids)
    errors: list[str] = []
    split: dict[str, list[Record]] = {}
    for name, path in (("gold", gold_path), ("dev", dev_path)):
        records = read_jsonl(path)
        split[name] = records
        ids = [r.get("id") for r in records]
        if ids != sorted(ids):  # type: ignore[type-var]
            errors.append(f"{name}: lines are not sorted by id")
        for r in records:
            pid = r.get("id")
            if not isinstance(pid, str) or pid not in papers:
                errors.append(f"{name}: id {pid!r} is not a seed paper")
                continue
            errors.extend(f"{name} {pid}: {e}" for e in check_record(r, papers[pid], categories, contributions))
    all_ids = [r.get("id") for rs in split.values() for r in rs]
    dupes = sorted(str(i) for i, k in Counter(all_ids).items() if k > 1)
    if dupes:
        errors.append(f"ids not unique across gold and dev: {dupes}")
    missing = sorted(set(papers) - set(map(str, all_ids)))
    if missing:
        errors.append(f"seed papers with no label: {missing}")
    if len(split["dev"]) != DEV_SIZE:
        errors.append(f"dev has {len(split['dev'])} papers, expected {DEV_SIZE}")
    sizes = Counter(r.get("primary") for rs in split.values() for r in rs)
    for r in split["dev"]:
        if sizes[r.get("primary")] < 2:
            errors.append(f"dev {r.get('id')}: the only paper of category {r.get('primary')!r}")
    gold_cats = Counter(r.get("primary") for r in split["gold"])
    dev_cats = Counter(r.get("primary") for r in split["dev"])
    for e in errors:
        print(f"ERROR {e}")
    print(f"gold {len(split['gold'])} papers: {dict(sorted(gold_cats.items()))}")
    print(f"dev  {len(split['dev'])} papers: {dict(sorted(dev_cats.items()))}")
    print("check: OK" if not errors else f"check: {len(errors)} error(s)")
    return 1 if errors else 0


# --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="validate gold.jsonl and dev.jsonl")
    mode.add_argument("--split", action="store_true", help="print the dev draw computed from gold+dev labels")
    parser.add_argument("--gold", type=Path, default=GOLD)
    parser.add_argument("--dev", type=Path, default=DEV)
    parser.add_argument("--taxonomy", type=Path, default=TAXONOMY)
    parser.add_argument("--seeds", type=Path, default=SEEDS)
    args = parser.parse_args(argv)
    papers = load_papers(args.seeds)
    if args.check:
        return check(args.gold, args.dev, papers, args.taxonomy)
    if args.split:
        records = read_jsonl(args.gold) + read_jsonl(args.dev)
        for pid in draw_dev(records):
            print(pid, papers[pid].title if pid in papers else "?")
        return 0
    result = agreement(by_id(read_jsonl(PASS1)), by_id(read_jsonl(PASS2)), papers)
    AGREEMENT.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_table(result)
    print(f"wrote {AGREEMENT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
