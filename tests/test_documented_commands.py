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


SHARED = REPO.parent / "shared" / "data"
# Documented lines that run in seconds on the built-in catalog or the shared data: each is executed exactly as
# written (from a folder whose ``jobs`` and ``../shared`` are the repository's), and must still be documented.
VERBATIM = {
    "cemg-ray validate --schema-only jobs/pipeline.yaml": ("README.md", None),
    "cemg-ray validate jobs/beauty.yaml": ("README.md", SHARED / "beauty"),
    "cemg-ray data stats ../shared/data/movielens-posters --format movielens": ("docs/MULTIMODAL.md",
                                                                               SHARED / "movielens-posters"),
    "cemg-ray run jobs/demo.yaml --stages data,features,pca --set features.use_ray=false": ("docs/FEATURES.md", None),
    'cemg-ray run jobs/beauty.yaml --stages data,popularity,evaluate --set "evaluate.models=[popularity]"':
        ("README.md", SHARED / "beauty"),
}


@pytest.mark.parametrize("line", list(VERBATIM))
def test_cheap_documented_commands_run_verbatim(line: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    doc, needs = VERBATIM[line]
    assert line in (REPO / doc).read_text(), f"{doc} no longer documents {line!r}: update VERBATIM"
    if needs is not None and not needs.exists():
        pytest.skip(f"{needs} is not on this machine")
    work = tmp_path / "repo"
    work.mkdir()
    (work / "jobs").symlink_to(REPO / "jobs")
    if (REPO.parent / "shared").exists():
        (tmp_path / "shared").symlink_to(REPO.parent / "shared")
    cli = Path(sys.executable).with_name("cemg-ray")
    argv = [str(cli), *shlex.split(line)[1:]]
    done = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"{line}: exit {done.returncode}\n{out[-3000:]}"
    assert "Traceback" not in out
    if "data stats" in line:
        for figure in ("943", "1,682", "100,000", "1,663"):
            assert figure in out
    if line.startswith("cemg-ray run"):
        run = work / "runs" / ("demo" if "demo.yaml" in line else "beauty")
        last = shlex.split(line)[shlex.split(line).index("--stages") + 1].split(",")[-1]
        assert (run / "_stages" / f"{last}.json").exists()
        assert not (run / "_staging").exists()
