"""Every ``bash`` block of README.md and docs/*.md runs as written (issue 14): the commands are extracted in
order (README first, then docs/ by name) and run in one shell on a fresh copy of the checkout's configs, with
``mmalign`` reached the way the README says (``. .venv/bin/activate``), and with the small settings the README
states for this test. Skipped, as the README says: ``make ...`` lines, ``mmalign demo`` runs (minutes; tests/demo
runs the demo) and lines whose trailing comment is marked ``(long...)``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
LONG = re.compile(r"#.*\(long\b[^)]*\)\s*$")

# The small settings README.md states for this test ("--scenes 300", "train.max_steps=2 train.batch_size=4" added
# to each `mmalign train` run, "--limit 10 --bootstrap 50" to each `mmalign eval` run).
SCENES = ("--scenes 40000", "--scenes 300")
TRAIN_SMALL = "train.max_steps=2 train.batch_size=4"
ONLINE_SMALL = "online.rounds=2 online.prompts_per_round=8"
EVAL_SMALL = "--limit 10 --bootstrap 50"


def commands(path: Path) -> list[str]:
    """The commands of ``path``'s bash blocks, in order: continuation lines joined, comments and blank lines
    dropped, skipped lines (see the module docstring) left out."""
    out: list[str] = []
    for block in BLOCK.findall(path.read_text(encoding="utf-8")):
        joined = re.sub(r"\s*\\\n\s*", " ", block)
        for line in joined.splitlines():
            text = line.strip()
            if not text or text.startswith("#") or LONG.search(text):
                continue
            if re.match(r"make\b", text) or re.match(r"mmalign demo\b", text):
                continue
            out.append(text)
    return out


def small(command: str) -> str:
    """``command`` with the small settings the README states."""
    command = command.replace(*SCENES)
    words = command.split("#", 1)[0].rstrip()
    if re.match(r"mmalign train [a-z-]+", words) and not re.search(r"--(list-losses|show-options|help)\b", words):
        return f"{words} {TRAIN_SMALL}{' ' + ONLINE_SMALL if words.startswith('mmalign train online-dpo') else ''}"
    if re.match(r"mmalign eval (--model|run)\b", words):
        return f"{words} {EVAL_SMALL}"
    return words


def test_the_readme_states_the_small_settings_this_test_uses() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    text = " ".join(readme.split())
    for setting in (SCENES[1], TRAIN_SMALL, ONLINE_SMALL, EVAL_SMALL, "tests/test_readme_commands.py", "(long)"):
        assert setting in text, f"README.md no longer states {setting!r}"
    assert any(SCENES[0] in c for c in commands(REPO / "README.md")), "the walkthrough's world command changed"


def test_extraction_joins_continuations_and_skips_what_the_readme_says(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "```bash\nmake demo   # set up\nmmalign demo --seed 1\n# a comment\nmmalign data build a.jsonl \\\n"
        "    --split val   # held out\nmmalign world --out w  # 2 GPUs (long: needs them)\n```\n"
        '```json\n{"not": "bash"}\n```\n'
    )
    assert commands(doc) == ["mmalign data build a.jsonl --split val   # held out"]
    train = "mmalign train pref --config c.yaml x=1"
    assert small(f"{train}  # note") == f"{train} {TRAIN_SMALL}"
    assert small("mmalign train pref --show-options --loss mdpo") == "mmalign train pref --show-options --loss mdpo"
    online = "mmalign train online-dpo --config c.yaml"
    assert small(online) == f"{online} {TRAIN_SMALL} {ONLINE_SMALL}"
    assert small("mmalign eval --model m --out r") == f"mmalign eval --model m --out r {EVAL_SMALL}"


@pytest.mark.slow
def test_every_documented_command_runs_in_order(tmp_path: Path) -> None:
    venv = REPO / ".venv"
    if not (venv / "bin" / "activate").is_file():
        pytest.skip("no .venv in the checkout (make setup makes it)")
    work = tmp_path / "checkout"
    work.mkdir()
    shutil.copytree(REPO / "configs", work / "configs")
    (work / ".venv").symlink_to(venv)
    lines = [small(c) for path in DOCS for c in commands(path)]
    assert any(line.startswith("mmalign world") for line in lines)
    script = ["set -eo pipefail", "trap 'echo \"FAILED: $BASH_COMMAND\" >&2' ERR"]
    for line in lines:
        script += [f"echo {shlex.quote('$ ' + line)}", line]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONHOME"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(venv)))
    env["MMALIGN_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=work, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    out = work / "pipeline-out"
    for made in ("world/pref/hallucinate_val.jsonl", "sft/model.safetensors", "pref/dpo", "runs/compare/compare.md"):
        assert (out / made).exists(), f"the walkthrough did not make pipeline-out/{made}"
    assert (out / "world" / "pref" / "hallucinate_val.jsonl").stat().st_size > 0
