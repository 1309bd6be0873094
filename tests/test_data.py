"""Specification of the comic-strip data layer (DESIGN.md section 2, "Data" and "Strip").

Every image is drawn here with PIL; nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from gazeheads.data import (
    Strip,
    export_hub_to_folder,
    list_comics,
    load_strip,
    parse_comics,
    resolve_comics,
    save_strip_folder,
    stitch,
)
from gazeheads.data.comics_corpus import corpus_strip_set, interior_pages
from gazeheads.data.hub import find_columns, hub_strip_set
from gazeheads.errors import DataError
from gazeheads.layout import StripLayout


def L(height: int = 256, gap: int = 6, n: int = 6) -> StripLayout:
    return StripLayout(height=height, gap=gap, n_panels=n)


def hub_strips(dataset, height=256, gap=6, n=6, split="train", start=0, stop=None):
    return list(hub_strip_set("test", split, start, stop, L(height, gap, n), source="hf:test", dataset=dataset))


def sample_comics_strips(root, n_strips, seed=0, n_panels=6, height=256):
    from gazeheads.data.comics_corpus import candidate_pages

    stop = n_strips if n_strips is not None else len(candidate_pages(root, n_panels))
    return list(corpus_strip_set(root, 0, stop, L(height, 6, n_panels), seed=seed))

COLOURS = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (220, 220, 30), (200, 30, 200), (30, 200, 200)]
WHITE = (255, 255, 255)


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (48, 48)) -> Image.Image:
    return Image.new("RGB", size, colour)


def panels(n: int = 6, size: tuple[int, int] = (48, 48)) -> list[Image.Image]:
    return [solid(COLOURS[k % len(COLOURS)], size) for k in range(n)]


def captions(n: int = 6, tag: str = "") -> list[str]:
    return [f"{tag}panel {k} happens" for k in range(1, n + 1)]


def centre(strip: Strip, k: int) -> tuple[int, int, int]:
    x0, y0, x1, y1 = strip.panel_boxes[k]
    return strip.image.getpixel(((x0 + x1) // 2, (y0 + y1) // 2))


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 6) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b))


# --- stitching -----------------------------------------------------------------------------------


def test_stitch_rounds_height_and_widths_to_multiples_of_32():
    strip = stitch([solid(COLOURS[0], (40, 40)), solid(COLOURS[1], (75, 60))], L(100, 6, 2))
    assert strip.image.height == 96  # 100 rounded to 32
    widths = [x1 - x0 for x0, _, x1, _ in strip.panel_boxes]
    assert widths == [96, 128]  # 96 * 40/40 = 96; 96 * 75/60 = 120 -> 128 (nearest multiple of 32)
    assert all(w % 32 == 0 for w in widths)


def test_stitch_panel_boxes_are_exact_for_unequal_widths():
    imgs = [solid(COLOURS[0], (40, 40)), solid(COLOURS[1], (80, 40)), solid(COLOURS[2], (50, 90))]
    strip = stitch(imgs, L(64, 6, 3))
    # widths 64, 128 and int(64*50/90) = 35 -> 32; panels edge to edge, nothing inserted
    assert strip.panel_boxes == [(0, 0, 64, 64), (64, 0, 192, 64), (192, 0, 224, 64)]
    assert strip.image.size == (224, 64)
    assert strip.n_panels == 3
    for k, colour in enumerate(COLOURS[:3]):
        assert close(centre(strip, k), colour)
    assert close(strip.image.getpixel((0, 0)), COLOURS[0])  # outer edges are not painted
    assert close(strip.image.getpixel((223, 63)), COLOURS[2])


def test_stitch_paints_a_white_band_over_each_inner_boundary():
    strip = stitch(panels(3), L(64, 6, 3))
    assert strip.image.size == (3 * 64, 64)  # the band is painted, not inserted
    for _, _, edge, _ in strip.panel_boxes[:-1]:
        for y in (0, 31, 63):
            assert [strip.image.getpixel((x, y)) for x in range(edge - 3, edge + 3)] == [WHITE] * 6
            assert strip.image.getpixel((edge - 4, y)) != WHITE and strip.image.getpixel((edge + 3, y)) != WHITE


def test_stitch_without_gap_and_default_size():
    strip = stitch(panels(6), L(gap=0))
    assert strip.image.size == (6 * 256, 256)
    assert [box[0] for box in strip.panel_boxes] == [256 * k for k in range(6)]


def test_stitch_rejects_no_panels_and_caption_count_mismatch():
    with pytest.raises(DataError, match="No panels"):
        stitch([])
    with pytest.raises(DataError, match="2 captions for 3 panels"):
        stitch(panels(3), captions=["a", "b"])
    with pytest.raises(DataError, match="over the 40 MP budget"):
        stitch([solid(COLOURS[0], (40000, 10))], L(256, 6, 1))


# --- comic folders ---------------------------------------------------------------------------------


def write_comic(folder: Path, n: int = 6, caps: list[str] | None = None, size=(48, 48)) -> Path:
    return save_strip_folder(folder, panels(n, size), caps)


def test_load_strip_reads_panels_in_order_and_names_the_strip_after_the_folder(tmp_path):
    folder = write_comic(tmp_path / "comic7")
    strip = load_strip(folder, L(64, 6))
    assert strip.comic_id == "comic7"
    assert strip.n_panels == 6 and strip.captions is None
    assert [close(centre(strip, k), COLOURS[k]) for k in range(6)] == [True] * 6
    assert strip.meta["source"] == "folder"


def test_load_strip_accepts_mixed_image_suffixes(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for k, img in enumerate(panels(3), start=1):
        img.save(folder / (f"p{k}.jpg" if k == 2 else f"p{k}.png"))
    assert load_strip(folder, L(32, 6, 3)).n_panels == 3


def test_missing_panel_is_named(tmp_path):
    folder = write_comic(tmp_path / "c")
    (folder / "p4.png").unlink()
    with pytest.raises(DataError, match=r"missing panel\(s\) p4"):
        load_strip(folder)


def test_extra_panel_is_named(tmp_path):
    folder = write_comic(tmp_path / "c")
    solid(WHITE).save(folder / "p7.png")
    with pytest.raises(DataError, match=r"extra panel\(s\) p7.png"):
        load_strip(folder)
    assert load_strip(folder, L(32, 6, 7)).n_panels == 7


def test_duplicate_panel_is_named(tmp_path):
    folder = write_comic(tmp_path / "c")
    solid(WHITE).save(folder / "p2.jpg")
    with pytest.raises(DataError, match="Panel 2 appears twice") as info:
        load_strip(folder)
    assert "p2.jpg" in str(info.value) and "p2.png" in str(info.value)


def test_unreadable_image_is_named(tmp_path):
    folder = write_comic(tmp_path / "c")
    (folder / "p3.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=r"Cannot read image .*p3\.png") as info:
        load_strip(folder)
    assert info.value.fix  # every DataError says how to fix it


def test_captions_json_round_trip(tmp_path):
    caps = captions(6, tag="ü ")
    folder = write_comic(tmp_path / "c", caps=caps)
    assert json.loads((folder / "captions.json").read_text(encoding="utf-8")) == caps
    assert load_strip(folder, L(32)).captions == caps
    save_strip_folder(folder, panels(6))  # rewriting without captions removes the stale file
    assert load_strip(folder, L(32)).captions is None


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "Cannot parse"),
        ('{"1": "a"}', "JSON list of strings"),
        ('["a", 2, "c", "d", "e", "f"]', "JSON list of strings"),
        ('["a", "b"]', "2 captions for 6 panels"),
    ],
)
def test_malformed_captions_json_is_an_error(tmp_path, content, message):
    folder = write_comic(tmp_path / "c")
    (folder / "captions.json").write_text(content)
    with pytest.raises(DataError, match=message):
        load_strip(folder)


def test_save_strip_folder_rejects_wrong_caption_count_and_clashing_panels(tmp_path):
    with pytest.raises(DataError, match="Expected 6 caption strings"):
        save_strip_folder(tmp_path / "c", panels(6), captions(5))
    assert not (tmp_path / "c").exists()  # nothing written on error
    folder = tmp_path / "d"
    folder.mkdir()
    solid(WHITE).save(folder / "p1.jpg")
    with pytest.raises(DataError, match="already holds other panel files: p1.jpg"):
        save_strip_folder(folder, panels(6))


def test_list_comics_is_naturally_sorted_and_skips_folders_without_panels(tmp_path):
    for name in ("comic10", "comic2", "comic1"):
        write_comic(tmp_path / name, n=2)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hi")
    assert [p.name for p in list_comics(tmp_path)] == ["comic1", "comic2", "comic10"]


def test_list_comics_errors_tell_the_expected_layout(tmp_path):
    with pytest.raises(DataError, match="not found") as info:
        list_comics(tmp_path / "nowhere")
    assert "ROOT/<comic>/p1.png" in info.value.fix
    with pytest.raises(DataError, match="No comic folders") as info:
        list_comics(tmp_path)
    assert "p1.png .. p6.png" in info.value.fix
    write_comic(tmp_path / "single", n=2)
    with pytest.raises(DataError, match="pass its parent"):
        list_comics(tmp_path / "single")


def test_folder_strips_honour_limit_slice_and_layout(tmp_path):
    for name in ("a", "b", "c"):
        write_comic(tmp_path / name, n=2)
    strips = resolve_comics(tmp_path, L(32, 2, 2), limit=2)
    assert [s.comic_id for s in strips] == ["a", "b"]
    assert strips[0].image.size == (32 + 32, 32)
    assert [s.comic_id for s in resolve_comics(f"{tmp_path}[1:3]", L(32, 2, 2))] == ["b", "c"]
    assert [s.comic_id for s in resolve_comics(f"{tmp_path}[1:]", L(32, 2, 2), limit=1)] == ["b"]


# --- Hugging Face dataset -----------------------------------------------------------------------


def hub_dataset(n_rows: int = 3, n_panels: int = 6, caption_template: str | None = "caption_{k}", sizes=None):
    datasets = pytest.importorskip("datasets")
    columns: dict = {"comic_id": list(range(100, 100 + n_rows))}
    features = {"comic_id": datasets.Value("int64")}
    for k in range(1, n_panels + 1):
        size = sizes[k - 1] if sizes else (40, 40)
        columns[f"panel_{k}"] = [solid(COLOURS[(k - 1 + r) % 6], size) for r in range(n_rows)]
        features[f"panel_{k}"] = datasets.Image()
        if caption_template:
            columns[caption_template.format(k=k)] = [f"row {r} panel {k}" for r in range(n_rows)]
            features[caption_template.format(k=k)] = datasets.Value("string")
    columns["style"] = ["noir"] * n_rows
    features["style"] = datasets.Value("string")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def test_hub_strips_from_in_memory_dataset_with_captions():
    strips = hub_strips(hub_dataset(), 32, 6)
    assert [s.comic_id for s in strips] == ["100", "101", "102"]
    assert strips[1].captions == [f"row 1 panel {k}" for k in range(1, 7)]
    assert strips[1].n_panels == 6 and strips[1].image.size == (6 * 32, 32)
    assert close(centre(strips[1], 0), COLOURS[1])  # row 1 starts one colour later
    assert strips[0].meta["style"] == "noir" and strips[0].meta["row"] == 0


def test_hub_strips_without_caption_columns_and_with_limit():
    strips = hub_strips(hub_dataset(caption_template=None), 32, stop=2)
    assert len(strips) == 2 and all(s.captions is None for s in strips)


@pytest.mark.parametrize("template", ["panel_{k}_caption", "Caption{k}", "text_{k}"])
def test_hub_caption_column_names_are_detected(template):
    names = ["comic_id", *[f"panel_{k}" for k in range(1, 7)], *[template.format(k=k) for k in range(1, 7)]]
    assert find_columns(names).captions == [template.format(k=k) for k in range(1, 7)]


def test_hub_accepts_a_dataset_dict_and_picks_the_split():
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict({"train": hub_dataset(1), "test": hub_dataset(2)})
    assert len(hub_strips(dd, 32, split="test")) == 2
    with pytest.raises(DataError, match="Split 'dev'"):
        hub_strips(dd, split="dev")


def test_hub_missing_columns_name_what_was_found_and_expected():
    ds = hub_dataset(1).remove_columns(["panel_6"])
    with pytest.raises(DataError, match="panel_1'..'panel_6'") as info:
        hub_strip_set("test", "train", 0, None, L(), source="hf:test", dataset=ds)  # checked before iterating
    assert "panel_5" in str(info.value) and "caption_1" in str(info.value)
    with pytest.raises(DataError, match="No 'comic_id' column"):
        hub_strips(hub_dataset(1).remove_columns(["comic_id"]))


def test_hub_partial_caption_columns_are_an_error_not_a_silent_drop():
    ds = hub_dataset(1).remove_columns(["caption_3"])
    with pytest.raises(DataError, match="do not cover panels 1..6"):
        hub_strips(ds)


def test_hub_export_round_trips_through_the_folder_layout(tmp_path):
    ds = hub_dataset(2, sizes=[(40, 40), (80, 40), (50, 90), (40, 60), (64, 64), (90, 45)])
    folders = export_hub_to_folder(tmp_path, dataset=ds)
    assert [f.name for f in folders] == ["100", "101"]
    assert sorted(p.name for p in folders[0].iterdir()) == ["captions.json", *[f"p{k}.png" for k in range(1, 7)]]
    assert Image.open(folders[0] / "p2.png").size == (80, 40)  # exported as in the dataset, not resized
    from_hub = hub_strips(ds, 64)
    from_disk = list(resolve_comics(tmp_path, L(64)))
    for a, b in zip(from_hub, from_disk, strict=True):
        assert a.comic_id == b.comic_id and a.captions == b.captions
        assert a.panel_boxes == b.panel_boxes
        assert a.image.tobytes() == b.image.tobytes()


def test_hub_export_without_captions_writes_no_captions_file(tmp_path):
    folders = export_hub_to_folder(tmp_path, dataset=hub_dataset(1, caption_template=None))
    assert not (folders[0] / "captions.json").exists()


# --- raw COMICS corpus --------------------------------------------------------------------------


def write_corpus(root: Path, comics: dict[str, dict[int, int]]) -> Path:
    """comics: {comic_id: {page: number of panels}}; panels are tiny JPEGs named <page>_<panel>.jpg."""
    for comic, pages in comics.items():
        folder = root / comic
        folder.mkdir(parents=True)
        for page, n in pages.items():
            for panel in range(n):
                solid(COLOURS[panel % 6], (16, 16)).save(folder / f"{page}_{panel}.jpg")
    return root


def test_comics_sampler_is_deterministic_for_a_seed(tmp_path):
    root = write_corpus(tmp_path, {"11": {p: 7 for p in range(4)}, "12": {p: 8 for p in range(5)}})
    first = [s.comic_id for s in sample_comics_strips(root, 5, seed=3, height=32)]
    again = [s.comic_id for s in sample_comics_strips(root, 5, seed=3, height=32)]
    other = [s.comic_id for s in sample_comics_strips(root, 5, seed=4, height=32)]
    later = [s.comic_id for s in corpus_strip_set(root, 5, 8, L(32), seed=3)]
    assert not set(later) & set(first)  # slices of one seed's sample are disjoint
    assert first == again and first != other
    assert len(set(first)) == 5
    strip = sample_comics_strips(root, 1, seed=0, height=32)[0]
    comic, rest = strip.comic_id.split("/")
    page, first_panel = map(int, rest.split(":"))
    assert strip.n_panels == 6 and strip.meta["files"][0].endswith(f"{comic}/{page}_{first_panel}.jpg")


def test_comics_sampler_skips_the_first_and_last_five_pages_of_long_comics(tmp_path):
    assert interior_pages(list(range(12))) == [5, 6]
    assert interior_pages(list(range(10))) == list(range(10))  # 10 pages: nothing skipped
    root = write_corpus(tmp_path, {"long": {p: 6 for p in range(12)}, "short": {0: 6, 1: 3}})
    ids = sorted(s.comic_id for s in sample_comics_strips(root, None, height=32))
    # long: only pages 5 and 6 are interior; short: page 1 has too few panels
    assert ids == ["long/5:0", "long/6:0", "short/0:0"]


def test_comics_sampler_uses_consecutive_panels_only(tmp_path):
    root = write_corpus(tmp_path, {"c": {0: 8}})
    (root / "c" / "0_3.jpg").unlink()  # panels 0,1,2,4,5,6,7: no run of 6
    with pytest.raises(DataError, match="No page .* has 6 consecutive panels"):
        corpus_strip_set(root, 0, 1, L())
    assert [s.comic_id for s in sample_comics_strips(root, 1, n_panels=4, height=32)] == ["c/0:4"]


def test_comics_sampler_errors(tmp_path):
    with pytest.raises(DataError, match="COMICS folder not found"):
        corpus_strip_set(tmp_path / "nowhere", 0, 1, L())
    root = write_corpus(tmp_path / "r", {"c": {0: 6}})
    with pytest.raises(DataError, match="only 1 pages"):
        corpus_strip_set(root, 0, 2, L())


# --- resolve_comics -----------------------------------------------------------------------------


def test_resolve_comics_dispatches_on_the_spec(tmp_path):
    write_comic(tmp_path / "folders" / "a", n=6)
    write_comic(tmp_path / "folders" / "b", n=6)
    assert [s.comic_id for s in resolve_comics(tmp_path / "folders", L(32))] == ["a", "b"]
    assert [s.comic_id for s in resolve_comics(str(tmp_path / "folders" / "b"), L(32))] == ["b"]
    root = write_corpus(tmp_path / "corpus", {"c": {0: 6, 1: 6}})
    assert len(resolve_comics(f"comics:{root}", L(32), limit=2)) == 2
    with pytest.raises(DataError, match="needs a number of strips"):
        resolve_comics(f"comics:{root}")
    with pytest.raises(DataError, match="no such folder") as info:
        resolve_comics("s3:bucket/comics")
    assert "hf:" in info.value.fix
    synth = resolve_comics("synth:7[2:5]", L(64, 0))
    assert synth.ids == ["synth_000009", "synth_000010", "synth_000011"]
    assert resolve_comics("synth:7", L(64, 0), limit=2).ids == ["synth_000007", "synth_000008"]


def test_resolve_comics_hf_spec_names_the_dataset_split_and_window(monkeypatch):
    import gazeheads.data.hub as hub

    calls = []

    def fake(name, split, start, stop, layout, *, source, dataset=None):
        calls.append((name, split, start, stop, layout.gap, source))
        return "strips"

    monkeypatch.setattr(hub, "hub_strip_set", fake)
    assert resolve_comics("hf:baulab/openai-comic-strips", L(gap=2), limit=5) == "strips"
    resolve_comics("hf:someone/strips:test[250:500]", L(n=4))
    resolve_comics("hf:someone/strips[250:]", L(), limit=10)
    assert calls == [
        ("baulab/openai-comic-strips", "train", 0, 5, 2, "hf:baulab/openai-comic-strips:train"),
        ("someone/strips", "test", 250, 500, 6, "hf:someone/strips:test"),
        ("someone/strips", "train", 250, 260, 6, "hf:someone/strips:train"),
    ]


@pytest.mark.parametrize("text, kind, start, stop", [
    ("synth", "synth", 0, None), ("synth:7[0:40]", "synth", 0, 40), ("hf:a/b[250:500]", "hf", 250, 500),
    ("comics:/data/comics[:20]", "comics", 0, 20), ("some/folder[3:]", "folder", 3, None),
])
def test_parse_comics_reads_every_form_and_its_slice(text, kind, start, stop):
    spec = parse_comics(text)
    assert (spec.kind, spec.start, spec.stop) == (kind, start, stop)


@pytest.mark.parametrize("text, message", [
    ("synth:abc", "seed"), ("synth[5:2]", "selects no strip"), ("hf:", "No dataset name"), ("", "No comics"),
    ("comics:", "No corpus folder"), ("synth[-3:]", "counts from the end"),
])
def test_parse_comics_refuses_malformed_specs(text, message):
    with pytest.raises(DataError, match=message):
        parse_comics(text)


def test_hub_accepts_list_columns_and_undecoded_images():
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "comic_id": datasets.Value("string"),
            "panels": datasets.List(datasets.Image(decode=False)),
            "captions": datasets.List(datasets.Value("string")),
        }
    )
    ds = datasets.Dataset.from_dict(
        {"comic_id": ["z"], "panels": [panels(3)], "captions": [captions(3)]}, features=features
    )
    (strip,) = hub_strips(ds, 32, n=3)
    assert strip.comic_id == "z" and strip.captions == captions(3)
    assert close(centre(strip, 2), COLOURS[2])
