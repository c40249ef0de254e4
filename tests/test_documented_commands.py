"""Every `cemg-ray` command in the README's and docs' shell blocks parses, names job files that exist, and its
`--set` overrides are keys of the schema: the documentation cannot drift from the CLI unnoticed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after ``cemg-ray``) for each command line of the ```bash blocks."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", text, flags=re.S):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                line = line.split(" # ", 1)[0].strip()
                m = re.search(r"(?:^|\s|/)cemg-ray\s+(.*)$", line)
                if not m or line.startswith("#"):
                    continue
                args = re.sub(r"\$\{?\w+\}?", "1", m.group(1))  # a loop variable stands for a value
                args = args.split(" | ")[0].split(" > ")[0].split(" && ")[0]
                found.append((f"{doc.relative_to(REPO)}: {line}", shlex.split(args)))
    return found


COMMANDS = documented_commands()


def test_the_docs_document_commands() -> None:
    assert len(COMMANDS) >= 20
    assert {argv[0] for _, argv in COMMANDS} >= {"run", "validate", "data", "bench", "codes", "ablate", "export"}


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[w[:90] for w, _ in COMMANDS])
def test_documented_command_parses_and_its_job_and_overrides_are_valid(where: str, argv: list[str]) -> None:
    from cemg_ray.cli import build_parser
    from cemg_ray.config import load_config

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{where}: the CLI rejects it (exit {exc.code})")
    jobs = [a for a in argv if a.endswith((".yaml", ".yml"))]
    for job in jobs:
        path = REPO / job
        if job.startswith("jobs/"):
            assert path.exists(), f"{where}: {job} is not in the repository"
    sets = list(getattr(args, "set", None) or [])
    if jobs and jobs[0].startswith("jobs/") and argv[0] in ("run", "validate", "ablate", "export"):
        load_config(REPO / jobs[0], sets)  # a wrong key or value raises ConfigError naming it
