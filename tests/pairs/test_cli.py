"""``mmalign data build | filter | dedup | mix | split``: outputs, summaries, one-line errors."""

from __future__ import annotations

import pytest

from mmalign.cli.main import main
from mmalign.data.io import read_records


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_build_writes_pairs_and_says_where_images_are(world, tmp_path, capsys):
    out = tmp_path / "h.jsonl"
    options = ["-o", "kinds=[swap, count]", "-o", "cooccur_prob=1.0", "--shard-size", "100"]
    argv = ["data", "build", str(out), "-s", "hallucinate", "--world", str(world), "--seed", "3", *options]
    code, text, err = run(argv, capsys)
    assert code == 0, err
    assert text.startswith(f"wrote 480 pairs from 240 scenes of world {world} (train) to {out}")
    assert f"image paths are relative to {tmp_path}" in text  # outside the world: images copied beside OUT
    records = list(read_records(out, check_images="exists"))
    assert {r.meta["kind"] for r in records} == {"swap", "count"}


def test_build_takes_options_from_yaml_and_lists_them(world, tmp_path, capsys):
    config = tmp_path / "opts.yaml"
    config.write_text("kinds: [which]\ngroups: 5\n")
    code, text, _ = run(
        [
            "data",
            "build",
            str(tmp_path / "m.jsonl"),
            "-s",
            "multi-image",
            "--world",
            str(world),
            "--config",
            str(config),
        ],
        capsys,
    )
    assert code == 0 and "wrote 5 pairs from 5 groups" in text
    code, text, _ = run(["data", "build", "-s", "hallucinate", "--show-options"], capsys)
    assert code == 0 and "cooccur_prob" in text and "realistic" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["-s", "nosuch", "--world", "{world}"], "error: unknown build strategy 'nosuch'; choose one of"),
        (["-s", "hallucinate", "--world", "{world}", "-o", "cooccur_prob=2"], "must be between 0 and 1, got 2"),
        (["-s", "hallucinate", "--world", "{world}", "-o", "nope=1"], "unknown key 'nope'"),
        (["-s", "hallucinate"], "hallucinate needs --world DIR or --input"),
        (["-s", "multi-image", "--world", "{world}", "--split", "dev"], "unknown split 'dev'"),
        (["-s", "hallucinate", "--world", "{tmp}"], "world.json is missing"),
        (["-s", "corrupt-image", "--world", "{world}", "--input", "{tmp}/x.jsonl"], "--input or --world"),
        (["-s", "multi-image", "--world", "{world}", "--input", "{tmp}/x.jsonl"], "would be ignored"),
    ],
)
def test_build_errors_are_one_line(world, tmp_path, capsys, args, message):
    argv = ["data", "build", str(tmp_path / "o.jsonl")] + [a.format(world=world, tmp=tmp_path) for a in args]
    code, _, err = run(argv, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert message in err


def test_filter_dedup_mix_split_commands(data_dir, helpers, tmp_path, capsys):
    same = helpers.pref(
        9, chosen=[{"role": "assistant", "content": "Same"}], rejected=[{"role": "assistant", "content": "same."}]
    )
    rows = [helpers.pref(i) for i in range(6)] + [same]
    rows[1]["id"] = "dup"  # helpers.pref rows differ only by id: all but the first are duplicates
    src = helpers.lines(data_dir / "p.jsonl", rows)
    code, text, _ = run(["data", "filter", str(src), str(data_dir / "f.jsonl")], capsys)
    assert (
        code == 0
        and text.strip() == f"kept 1 of 7 records in {data_dir / 'f.jsonl'}; dropped: 5 duplicate, 1 identical"
    )
    code, text, _ = run(["data", "dedup", str(src), str(data_dir / "d.jsonl")], capsys)
    assert code == 0 and "kept 2 of 7" in text  # the identical pair is not a duplicate
    other = helpers.lines(data_dir / "q.jsonl", [helpers.pref(i, id=f"q{i}") for i in range(4)])
    code, text, _ = run(["data", "mix", str(data_dir / "mix.jsonl"), "-i", f"{src}:n=3", "-i", str(other)], capsys)
    assert code == 0 and text.startswith("wrote 7 records") and len(list(read_records(data_dir / "mix.jsonl"))) == 7
    code, text, _ = run(
        [
            "data",
            "split",
            str(data_dir / "mix.jsonl"),
            str(data_dir / "parts"),
            "--group-by",
            "id",
            "--ratio",
            "a=0.5",
            "--ratio",
            "b=0.5",
        ],
        capsys,
    )
    assert code == 0 and "split 7 records" in text
    assert sum(len(list(read_records(data_dir / "parts" / f"{n}.jsonl", root=data_dir))) for n in "ab") == 7
    code, _, err = run(["data", "split", str(src), str(data_dir / "parts"), "--ratio", "a=0.7"], capsys)
    assert code == 2 and "split ratios must sum to 1" in err
