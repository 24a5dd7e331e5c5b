"""Tests for the input readers.

The expected counts, titles and abstract boundaries below were taken by reading the seed
files by hand (line numbers refer to the files as they are), not from the parser's output.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from summarizer.errors import InputError
from summarizer.schemas import Paper, paper_id
from summarizer.sources import find_paper, read_inputs, read_papers

SEEDS = Path(__file__).parent.parent / "examples" / "seeds"
FEED = SEEDS / "000_8bcbaaa93f595634.txt"
PAGE1 = SEEDS / "001_3f36dc078def8be6.txt"
PAGE2 = SEEDS / "002_2f4c7783e71f772c.txt"

CHROME = {
    "new",
    "Get trending papers in your email inbox!",
    "Subscribe",
    "Daily Papers",
    "byAK and the research community",
}


def by_title(papers: list[Paper], title: str) -> Paper:
    matches = [p for p in papers if p.title == title]
    assert len(matches) == 1, f"{title!r}: {len(matches)} matches"
    return matches[0]


# --------------------------------------------------------------------------------------
# Seed files: counts


@pytest.mark.parametrize(("path", "count"), [(FEED, 6), (PAGE1, 42), (PAGE2, 44)])
def test_paper_count_per_seed_file(path: Path, count: int) -> None:
    assert len(read_papers(path)) == count


def test_distinct_papers_across_seeds() -> None:
    # 001 and 002 share 15 titles; the feed shares none with either: 6 + 42 + 44 - 15.
    assert len(read_inputs([FEED, PAGE1, PAGE2])) == 77
    assert len(read_inputs([PAGE1, PAGE2])) == 71


def test_seed_files_are_read_without_errors() -> None:
    errors: list[InputError] = []
    for path in (FEED, PAGE1, PAGE2):
        read_papers(path, on_error=errors.append)
    assert errors == []


# --------------------------------------------------------------------------------------
# Daily-papers page dumps


def test_page1_first_and_last_titles() -> None:
    papers = read_papers(PAGE1)
    assert papers[0].title == "Easy-to-Hard Generalization: Scalable Alignment Beyond Human Supervision"
    assert papers[0].line == 13
    assert papers[-1].title == (
        "LLMs Learn to Deceive Unintentionally: Emergent Misalignment in Dishonesty "
        "from Misaligned Samples to Biased Human-AI Interactions"
    )
    assert papers[-1].line == 341


def test_page2_first_and_last_titles() -> None:
    papers = read_papers(PAGE2)
    assert papers[0].title == (
        "Knowledge Distillation and Dataset Distillation of Large Language Models: "
        "Emerging Trends, Challenges, and Future Directions"
    )
    assert papers[-1].title == "PIKA: Expert-Level Synthetic Datasets for Post-Training Alignment from Scratch"
    assert papers[-1].line == 349


def test_page_abstract_boundaries() -> None:
    p1 = read_papers(PAGE1)
    first = p1[0]
    assert first.abstract[:40] == "Current AI alignment methodologies rely "
    assert first.abstract[-40:] == "eyond the frontier of human supervision."
    assert len(first.abstract) == 1501
    last = p1[-1]
    assert last.abstract[:40] == "Previous research has shown that LLMs fi"
    assert last.abstract[-40:] == "sks and practical human-AI interactions."
    p2 = read_papers(PAGE2)
    assert p2[0].abstract[:40] == "The exponential growth of Large Language"
    assert p2[0].abstract[-40:] == "ter integration of KD and DD principles."
    assert p2[-1].abstract[:40] == "Reinforcement Learning from Human Feedba"
    assert p2[-1].abstract[-40:] == "d data: https://github.com/SJY8460/PiKa."


def test_entries_without_footer() -> None:
    papers = read_papers(PAGE2)
    # Lines 189 and 209: title, blank, abstract, blank, next title (no footer).
    gt = by_title(papers, "GTAlign: Game-Theoretic Alignment of LLM Assistants for Mutual Welfare")
    assert gt.line == 189
    assert gt.abstract[:40] == "Large Language Models (LLMs) have achiev"
    assert gt.abstract[-40:] == "t https://github.com/ulab-uiuc/GTAlign ."
    assert (gt.date, gt.author_count, gt.metadata) == (None, None, {})
    infi = by_title(
        papers,
        "InfiAlign: A Scalable and Sample-Efficient Framework for Aligning LLMs to Enhance Reasoning Capabilities",
    )
    assert infi.line == 209
    assert infi.abstract[-40:] == "gface.co/InfiX-ai/InfiAlign-Qwen-7B-SFT."
    assert infi.date is None
    # The entries right after them keep their own footers.
    inf = by_title(papers, "InfAlign: Inference-aware language model alignment")
    assert (inf.line, inf.author_count, inf.date) == (193, 12, "Dec 27, 2024")
    reason = by_title(papers, "Making Large Language Models Better Reasoners with Alignment")
    assert (reason.line, reason.author_count, reason.date) == (213, 8, "Sep 5, 2023")


def test_organisation_footers() -> None:
    fudan = read_papers(PAGE1)[-1]
    assert fudan.author_count is None
    assert fudan.authors is None
    assert fudan.date == "Oct 9, 2025"
    assert fudan.metadata == {"organisation": "Fudan University", "organisation_id": "Fudan-University", "upvotes": "2"}
    aim = by_title(
        read_papers(PAGE1), "Eliciting and Analyzing Emergent Misalignment in State-of-the-Art Large Language Models"
    )
    assert aim.metadata == {"organisation": "AIM Intelligence", "organisation_id": "AIM-Intelligence"}
    assert aim.date == "Aug 6, 2025"


def test_page_dates_and_upvotes() -> None:
    p1 = read_papers(PAGE1)
    first = p1[0]
    assert (first.date, first.author_count, first.metadata) == ("Mar 14, 2024", 7, {})
    baichuan = by_title(p1, "Baichuan Alignment Technical Report")
    assert (baichuan.date, baichuan.author_count, baichuan.metadata) == ("Oct 18, 2024", 25, {"upvotes": "2"})
    p2 = read_papers(PAGE2)
    learn = by_title(p2, "Learning to Align, Aligning to Learn: A Unified Approach for Self-Optimized Alignment")
    assert (learn.date, learn.metadata) == ("Aug 11", {"upvotes": "2"})
    safety = by_title(
        p2,
        "Alignment and Safety in Large Language Models: Safety Mechanisms, Training Paradigms, and Emerging Challenges",
    )
    assert (safety.date, safety.author_count, safety.metadata) == ("Jul 25", 50, {})
    assert p2[-1].date == "Oct 8"  # last line of the file, no trailing newline handling issue


def test_no_chrome_or_footer_line_is_a_title() -> None:
    for path in (PAGE1, PAGE2):
        for paper in read_papers(path):
            assert paper.title not in CHROME
            assert paper.title not in {"Jan 6", "Dec 29", "·"}
            assert "authors" not in paper.title
            assert len(paper.abstract) > 1000  # no title was taken for an abstract
            assert paper.source == str(path)


# --------------------------------------------------------------------------------------
# Feed dump


def test_feed_titles_authors_and_metadata() -> None:
    papers = read_papers(FEED)
    assert [p.title for p in papers] == [
        "AI Alignment: A Comprehensive Survey",
        "PRISM-X: Experiments on Personalised Fine-Tuning with Human and Simulated Users",
        "Curriculum Learning-Guided Progressive Distillation in Large Language Models",
        "Reward Generalization in RLHF: A Topological Perspective",
        "ADRD: LLM-Driven Autonomous Driving Based on Rule-based Decision Systems",
        "Linear Representation Transferability Hypothesis: Leveraging Small Models to Steer Large Models",
    ]
    assert [p.line for p in papers] == [2, 5, 8, 11, 14, 17]
    assert papers[0].authors == ["Jiaming Ji", "Tianyi Qiu", "Boyuan Chen"]
    assert papers[1].authors == ["Hannah Rose Kirk", "Liu Leqi", "Fanzhi Zeng"]
    # The score printed before "CLMay 13" belongs to the entry above it.
    assert papers[0].metadata["subject"] == "AI"
    assert papers[0].metadata["score"] == "83.0"
    assert papers[0].date == "Oct 30, 2023"
    assert (papers[1].metadata["subject"], papers[1].metadata["score"], papers[1].date) == ("CL", "66.9", "May 13")
    # "LGFeb 15, 2024" has no score before it: the entry above it (line 8) has none.
    assert "score" not in papers[2].metadata
    assert (papers[3].metadata["subject"], papers[3].date) == ("LG", "Feb 15, 2024")
    assert "score" not in papers[-1].metadata


def test_feed_abstract_boundaries() -> None:
    papers = read_papers(FEED)
    assert papers[0].abstract[:40] == "AI alignment aims to make AI systems beh"
    assert papers[0].abstract[-40:] == "papers, blog posts, and other resources."
    assert len(papers[0].abstract) == 1188
    assert papers[1].abstract[-40:] == "dback dynamics that diverge from humans."
    assert papers[-1].abstract[:40] == "It has been hypothesized that neural net"
    assert papers[-1].abstract[-40:] == "sentation alignment across model scales."


def test_feed_title_split_with_glued_capitals(tmp_path: Path) -> None:
    dump = tmp_path / "feed.txt"
    dump.write_text(
        "CLJan 2, 2024\n"
        "ProgressGym: Alignment with LLMsYann LeCun, Ludwig van Beethoven\n"
        "An abstract.\n"
        "12.5LGFeb 3\n"
        "Phishing Detection, Self-Consistency, and ExplainabilityAnn Lee et al.\n"
        "Another abstract.\n"
        "40.1\n",
        encoding="utf-8",
    )
    first, second = read_papers(dump)
    assert first.title == "ProgressGym: Alignment with LLMs"
    assert first.authors == ["Yann LeCun", "Ludwig van Beethoven"]
    assert first.metadata == {"subject": "CL", "score": "12.5"}
    assert second.title == "Phishing Detection, Self-Consistency, and Explainability"
    assert second.authors == ["Ann Lee"]
    assert second.metadata == {"subject": "LG", "score": "40.1", "authors_truncated": "true"}


# --------------------------------------------------------------------------------------
# Merging and ids


def test_duplicates_across_pages_are_merged_first_wins() -> None:
    merged = read_inputs([PAGE1, PAGE2])
    titles = [p.title for p in merged]
    assert len(titles) == len(set(titles))
    # First-seen order: all of 001, then what only 002 has.
    assert [p.title for p in merged[:42]] == [p.title for p in read_papers(PAGE1)]
    assert merged[42].title == read_papers(PAGE2)[0].title
    learn = by_title(merged, "Learning to Align, Aligning to Learn: A Unified Approach for Self-Optimized Alignment")
    assert (learn.date, learn.source, learn.line) == ("Aug 11, 2025", str(PAGE1), 301)
    # The two pages differ in one URL of this abstract; neither is a prefix: first wins.
    baichuan = by_title(merged, "Baichuan Alignment Technical Report")
    assert "hface.xiaobaizhang.top" in baichuan.abstract
    reverse = by_title(read_inputs([PAGE2, PAGE1]), "Baichuan Alignment Technical Report")
    assert "huggingface.co/PKU-Baichuan" in reverse.abstract
    assert reverse.id == baichuan.id


def test_merge_fills_missing_fields_and_keeps_longer_abstract(tmp_path: Path) -> None:
    full = read_papers(PAGE1)[0]
    jsonl = tmp_path / "papers.jsonl"
    record = {
        "title": full.title.upper(),
        "abstract": full.abstract[:200] + "...",
        "authors": ["Zhiqing Sun", "Longhui Yu"],
        "venue": "NeurIPS",
    }
    jsonl.write_text(json.dumps(record) + "\n", encoding="utf-8")
    (merged,) = [p for p in read_inputs([jsonl, PAGE1]) if p.id == full.id]
    assert merged.title == full.title.upper()  # first occurrence's fields
    assert merged.source == str(jsonl)
    assert merged.abstract == full.abstract  # the truncated prefix is replaced
    assert merged.authors == ["Zhiqing Sun", "Longhui Yu"]
    assert merged.author_count == 7 and merged.date == "Mar 14, 2024"
    assert merged.metadata == {"venue": "NeurIPS"}


def test_ids_are_stable_across_formats(tmp_path: Path) -> None:
    seed = by_title(read_papers(PAGE2), "Invariant Graph Transformer")
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text(
        json.dumps({"title": "  invariant   GRAPH transformer ", "abstract": "x"}) + "\n", encoding="utf-8"
    )
    csv_file = tmp_path / "a.csv"
    csv_file.write_text('Title,Abstract\n"Invariant Graph Transformer.",x\n', encoding="utf-8")
    assert read_papers(jsonl)[0].id == seed.id == read_papers(csv_file)[0].id == paper_id("Invariant Graph Transformer")
    feed = read_papers(FEED)[0]
    assert feed.id == paper_id("AI Alignment: A Comprehensive Survey")


# --------------------------------------------------------------------------------------
# JSONL and CSV


def test_jsonl_fields_metadata_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    rows = [
        {
            "Title": "Paper One",
            "ABSTRACT": "First abstract.",
            "authors": "Ann Lee; Bo Li",
            "date": "2024-01-02",
            "id": "2401.00001",
            "venue": "ICML",
            "year": 2024,
            "tags": ["a", "b"],
        },
        {"title": "Paper Two", "abstract": "Second.", "authors": ["C D"], "author_count": 3},
    ]
    path.write_text(json.dumps(rows[0]) + "\n\n   \n" + json.dumps(rows[1]) + "\n", encoding="utf-8")
    one, two = read_papers(path)
    assert (one.title, one.abstract, one.authors, one.date, one.line) == (
        "Paper One",
        "First abstract.",
        ["Ann Lee", "Bo Li"],
        "2024-01-02",
        1,
    )
    assert one.metadata == {"id": "2401.00001", "venue": "ICML", "year": "2024", "tags": '["a", "b"]'}
    assert one.id == paper_id("Paper One")
    assert (two.line, two.authors, two.author_count) == (4, ["C D"], 3)


def test_malformed_jsonl_line_reported_and_rest_read(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"title": "Good A", "abstract": "a"}\n'
        '{"title": "Broken", "abstract": \n'
        '["not", "an", "object"]\n'
        '{"title": "", "abstract": "no title"}\n'
        '{"title": "Good B", "abstract": "b"}\n',
        encoding="utf-8",
    )
    errors: list[InputError] = []
    papers = read_papers(path, on_error=errors.append)
    assert [p.title for p in papers] == ["Good A", "Good B"]
    assert [p.line for p in papers] == [1, 5]
    assert [e.line for e in errors] == [2, 3, 4]
    assert all(e.path == path for e in errors)
    assert str(errors[0]).startswith(f"{path}:2: invalid JSON")
    assert "title" in str(errors[2])
    # Without a callback the first bad line raises.
    with pytest.raises(InputError, match=r"bad\.jsonl:2:"):
        read_papers(path)


def test_csv_reader_keeps_metadata_and_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(
        "TITLE,Abstract,authors,Date,venue,empty\n"
        'Paper One,"An abstract, with a comma",Ann Lee; Bo Li,2024-05-01,ACL,\n'
        '"Paper Two","A multi-line\nabstract",Cy Dee,,EMNLP,\n'
        ",missing title,,,,\n",
        encoding="utf-8",
    )
    errors: list[InputError] = []
    one, two = read_papers(path, on_error=errors.append)
    assert (one.title, one.abstract, one.authors, one.date, one.line) == (
        "Paper One",
        "An abstract, with a comma",
        ["Ann Lee", "Bo Li"],
        "2024-05-01",
        2,
    )
    assert one.metadata == {"venue": "ACL"}
    assert (two.abstract, two.line, two.date, two.metadata) == ("A multi-line\nabstract", 3, None, {"venue": "EMNLP"})
    assert len(errors) == 1 and errors[0].line == 5 and "title" in errors[0].reason


def test_csv_missing_abstract_column(tmp_path: Path) -> None:
    path = tmp_path / "noabs.csv"
    path.write_text("title,summary\nA,B\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_papers(path, on_error=lambda e: None)  # a file-level error raises regardless
    assert "abstract" in str(info.value)
    assert "noabs.csv" in str(info.value)
    assert info.value.path == path


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "papers.xlsx"
    path.write_bytes(b"PK")
    with pytest.raises(InputError) as info:
        read_papers(path)
    message = str(info.value)
    assert "papers.xlsx" in message
    for ext in (".jsonl", ".json", ".csv", ".txt"):
        assert ext in message


def test_unrecognised_txt_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some notes\n\nmore notes\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"notes\.txt"):
        read_papers(path)
    with pytest.raises(InputError, match="not found"):
        read_papers(tmp_path / "nope.jsonl")


def test_invalid_utf8_and_control_characters(tmp_path: Path) -> None:
    jsonl = tmp_path / "bytes.jsonl"
    jsonl.write_bytes(b'{"title": "Caf\xe9 \\u0007Models", "abstract": "ok\\u0000 text\\tkept"}\n')
    (paper,) = read_papers(jsonl)
    assert paper.title == "Café Models"  # a Latin-1 byte inside a word: detected as cp1252, not replaced
    assert paper.abstract == "ok text\tkept"
    page = tmp_path / "page.txt"
    page.write_bytes(PAGE1.read_bytes().replace(b"Alignment for Honesty", b"Alignment\xff for\x01 Honesty"))
    papers = read_papers(page)
    assert len(papers) == 42
    assert papers[17].title == "Alignment\ufffd for Honesty"


# --------------------------------------------------------------------------------------
# find_paper


def test_find_paper() -> None:
    papers = read_inputs([FEED, PAGE1, PAGE2])
    deal = find_paper(papers, "DeAL: Decoding-time Alignment for Large Language Models")
    assert find_paper(papers, deal.id) is deal
    assert find_paper(papers, "deal decoding time alignment for large language models") is deal
    assert find_paper(papers, "Decoding-time").title == deal.title
    # An exact title wins even when it is also a substring of another title.
    dyn = find_paper(papers, "Dynamic Normativity: Necessary and Sufficient Conditions for Value Alignment")
    assert dyn.author_count == 1


def test_find_paper_ambiguous_and_missing() -> None:
    papers = read_inputs([FEED, PAGE1, PAGE2])
    with pytest.raises(InputError) as info:
        find_paper(papers, "alignment")
    message = str(info.value)
    assert sum(p.id in message for p in papers) == 5  # candidates are listed, at most five
    assert "more" in message
    with pytest.raises(InputError, match="no paper matches"):
        find_paper(papers, "quantum chromodynamics")
    with pytest.raises(InputError):
        find_paper(papers, "   ")
