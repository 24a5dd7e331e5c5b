"""Record the embedded model's answers on the check lists, for offline analysis (no fitting).

Two phases, each resumable and appending as it goes:

1. `--questions`: the subject and category questions of `prompts/questions.j2`, asked exactly as
   `evals/tools/decision_probe.py` asks them (same system prompt, paper block and cache key), of
   every paper in `evals/checklists/*.jsonl`; answers go to `evals/decision-probe/answers.jsonl`.
2. `--generated`: today's default pipeline (`summarizer tag`, generated labels) over the same
   papers, into `evals/checklists/runs/generated/`.

    python evals/tools/record_checklists.py --questions --generated

The check lists are for checking only: nothing read from these answers may be fitted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "evals/tools"))
sys.path.insert(0, str(ROOT))

LISTS = [ROOT / "evals/checklists/raw-feed.jsonl", ROOT / "evals/checklists/reading-list.jsonl"]
ASKED = ("subject", "category")


def questions() -> None:
    import decision_probe as dp
    import openai

    from summarizer.llm import EmbeddedServer
    from summarizer.models import default_model_path
    from summarizer.spans import candidate_names, split_sentences

    papers = [json.loads(line) for path in LISTS for line in path.read_text(encoding="utf-8").splitlines()]
    server = EmbeddedServer(default_model_path(), n_ctx=4096)
    server.start()
    try:
        dp.CLIENT = openai.OpenAI(base_url=server.base_url, api_key="none", timeout=300)
        for i, p in enumerate(papers, 1):
            t0 = time.perf_counter()
            sentences = split_sentences(p["abstract"])
            names = tuple(candidate_names(p["abstract"]))
            block = dp.QS.paper_block(p["title"], sentences) + "\n"
            for q in dp.QS.first_round(names, len(sentences), findings=True):
                if q.key in ASKED:
                    dp.ask(block + q.text)
            print(f"{i}/{len(papers)} {p['id']} {time.perf_counter() - t0:.1f}s", flush=True)
    finally:
        server.stop()


def generated() -> None:
    out = ROOT / "evals/checklists/runs/generated"
    cmd = [sys.executable, "-m", "summarizer.cli", "tag", *map(str, LISTS), "-o", str(out), "--log-format", "jsonl"]
    subprocess.run(cmd, cwd=ROOT, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", action="store_true")
    parser.add_argument("--generated", action="store_true")
    args = parser.parse_args()
    if args.questions:
        questions()
    if args.generated:
        generated()


if __name__ == "__main__":
    main()
