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
    iter_strips,
    list_comics,
    load_hub_strips,
    load_strip,
    resolve_comics,
    sample_comics_strips,
    save_strip_folder,
    stitch,
)
from gazeheads.data.comics_corpus import interior_pages
from gazeheads.data.hub import find_columns
from gazeheads.errors import DataError

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
    strip = stitch([solid(COLOURS[0], (40, 40)), solid(COLOURS[1], (75, 60))], height=100, gap=6)
    assert strip.image.height == 96  # 100 rounded to 32
    widths = [x1 - x0 for x0, _, x1, _ in strip.panel_boxes]
    assert widths == [96, 128]  # 96 * 40/40 = 96; 96 * 75/60 = 120 -> 128 (nearest multiple of 32)
    assert all(w % 32 == 0 for w in widths)


def test_stitch_panel_boxes_are_exact_for_unequal_widths():
    imgs = [solid(COLOURS[0], (40, 40)), solid(COLOURS[1], (80, 40)), solid(COLOURS[2], (50, 90))]
    strip = stitch(imgs, height=64, gap=6)
    # widths 64, 128 and 64*50/90 = 35.6 -> 32; each panel starts gap pixels after the previous one
    assert strip.panel_boxes == [(0, 0, 64, 64), (70, 0, 198, 64), (204, 0, 236, 64)]
    assert strip.image.size == (236, 64)
    assert strip.n_panels == 3
    for k, colour in enumerate(COLOURS[:3]):
        assert close(centre(strip, k), colour)
        x0, y0, x1, y1 = strip.panel_boxes[k]
        assert close(strip.image.getpixel((x0, y0)), colour)  # edges belong to the panel too
        assert close(strip.image.getpixel((x1 - 1, y1 - 1)), colour)


def test_stitch_gap_pixels_are_white():
    strip = stitch(panels(3), height=64, gap=6)
    for (_, _, right, _), (left, _, _, _) in zip(strip.panel_boxes, strip.panel_boxes[1:]):
        assert left - right == 6
        for x in range(right, left):
            for y in (0, 31, 63):
                assert strip.image.getpixel((x, y)) == WHITE


def test_stitch_without_gap_and_default_size():
    strip = stitch(panels(6), gap=0)
    assert strip.image.size == (6 * 256, 256)
    assert [box[0] for box in strip.panel_boxes] == [256 * k for k in range(6)]


def test_stitch_rejects_no_panels_and_caption_count_mismatch():
    with pytest.raises(DataError, match="No panels"):
        stitch([])
    with pytest.raises(DataError, match="2 captions for 3 panels"):
        stitch(panels(3), captions=["a", "b"])


# --- comic folders ---------------------------------------------------------------------------------


def write_comic(folder: Path, n: int = 6, caps: list[str] | None = None, size=(48, 48)) -> Path:
    return save_strip_folder(folder, panels(n, size), caps)


def test_load_strip_reads_panels_in_order_and_names_the_strip_after_the_folder(tmp_path):
    folder = write_comic(tmp_path / "comic7")
    strip = load_strip(folder, height=64, gap=6)
    assert strip.comic_id == "comic7"
    assert strip.n_panels == 6 and strip.captions is None
    assert [close(centre(strip, k), COLOURS[k]) for k in range(6)] == [True] * 6
    assert strip.meta["source"] == "folder"


def test_load_strip_accepts_mixed_image_suffixes(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for k, img in enumerate(panels(3), start=1):
        img.save(folder / (f"p{k}.jpg" if k == 2 else f"p{k}.png"))
    assert load_strip(folder, n_panels=3, height=32).n_panels == 3


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
    assert load_strip(folder, n_panels=7, height=32).n_panels == 7


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
    assert load_strip(folder, height=32).captions == caps
    save_strip_folder(folder, panels(6))  # rewriting without captions removes the stale file
    assert load_strip(folder, height=32).captions is None


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


def test_iter_strips_honours_limit_and_stitch_options(tmp_path):
    for name in ("a", "b", "c"):
        write_comic(tmp_path / name, n=2)
    strips = list(iter_strips(tmp_path, n_panels=2, limit=2, height=32, gap=2))
    assert [s.comic_id for s in strips] == ["a", "b"]
    assert strips[0].image.size == (32 + 2 + 32, 32)


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
    strips = list(load_hub_strips(dataset=hub_dataset(), height=32, gap=6))
    assert [s.comic_id for s in strips] == ["100", "101", "102"]
    assert strips[1].captions == [f"row 1 panel {k}" for k in range(1, 7)]
    assert strips[1].n_panels == 6 and strips[1].image.size == (6 * 32 + 5 * 6, 32)
    assert close(centre(strips[1], 0), COLOURS[1])  # row 1 starts one colour later
    assert strips[0].meta["style"] == "noir" and strips[0].meta["row"] == 0


def test_hub_strips_without_caption_columns_and_with_limit():
    strips = list(load_hub_strips(dataset=hub_dataset(caption_template=None), limit=2, height=32))
    assert len(strips) == 2 and all(s.captions is None for s in strips)


@pytest.mark.parametrize("template", ["panel_{k}_caption", "Caption{k}", "text_{k}"])
def test_hub_caption_column_names_are_detected(template):
    names = ["comic_id", *[f"panel_{k}" for k in range(1, 7)], *[template.format(k=k) for k in range(1, 7)]]
    assert find_columns(names).captions == [template.format(k=k) for k in range(1, 7)]


def test_hub_accepts_a_dataset_dict_and_picks_the_split():
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict({"train": hub_dataset(1), "test": hub_dataset(2)})
    assert len(list(load_hub_strips(dataset=dd, split="test", height=32))) == 2
    with pytest.raises(DataError, match="Split 'dev'"):
        load_hub_strips(dataset=dd, split="dev")


def test_hub_missing_columns_name_what_was_found_and_expected():
    ds = hub_dataset(1).remove_columns(["panel_6"])
    with pytest.raises(DataError, match="panel_1'..'panel_6'") as info:
        load_hub_strips(dataset=ds)  # checked at call time, before iterating
    assert "panel_5" in str(info.value) and "caption_1" in str(info.value)
    with pytest.raises(DataError, match="No 'comic_id' column"):
        load_hub_strips(dataset=hub_dataset(1).remove_columns(["comic_id"]))


def test_hub_partial_caption_columns_are_an_error_not_a_silent_drop():
    ds = hub_dataset(1).remove_columns(["caption_3"])
    with pytest.raises(DataError, match="do not cover panels 1..6"):
        load_hub_strips(dataset=ds)


def test_hub_export_round_trips_through_the_folder_layout(tmp_path):
    ds = hub_dataset(2, sizes=[(40, 40), (80, 40), (50, 90), (40, 60), (64, 64), (90, 45)])
    folders = export_hub_to_folder(tmp_path, dataset=ds)
    assert [f.name for f in folders] == ["100", "101"]
    assert sorted(p.name for p in folders[0].iterdir()) == ["captions.json", *[f"p{k}.png" for k in range(1, 7)]]
    assert Image.open(folders[0] / "p2.png").size == (80, 40)  # exported as in the dataset, not resized
    from_hub = list(load_hub_strips(dataset=ds, height=64))
    from_disk = list(iter_strips(tmp_path, height=64))
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
        sample_comics_strips(root, 1)
    assert [s.comic_id for s in sample_comics_strips(root, 1, n_panels=4, height=32)] == ["c/0:4"]


def test_comics_sampler_errors(tmp_path):
    with pytest.raises(DataError, match="COMICS folder not found"):
        sample_comics_strips(tmp_path / "nowhere", 1)
    root = write_corpus(tmp_path / "r", {"c": {0: 6}})
    with pytest.raises(DataError, match="only 1 pages"):
        sample_comics_strips(root, 2)


# --- resolve_comics -----------------------------------------------------------------------------


def test_resolve_comics_dispatches_on_the_spec(tmp_path):
    write_comic(tmp_path / "folders" / "a", n=6)
    write_comic(tmp_path / "folders" / "b", n=6)
    assert [s.comic_id for s in resolve_comics(tmp_path / "folders", height=32)] == ["a", "b"]
    assert [s.comic_id for s in resolve_comics(str(tmp_path / "folders" / "b"), height=32)] == ["b"]
    root = write_corpus(tmp_path / "corpus", {"c": {0: 6, 1: 6}})
    assert len(resolve_comics(f"comics:{root}", limit=2, height=32)) == 2
    with pytest.raises(DataError, match="needs a number of strips"):
        resolve_comics(f"comics:{root}")
    with pytest.raises(DataError, match="no such folder") as info:
        resolve_comics("s3:bucket/comics")
    assert "hf:" in info.value.fix


def test_resolve_comics_hf_spec_loads_the_named_dataset_and_split(monkeypatch):
    import gazeheads.data as data

    calls = []

    def fake_load_hub_strips(name, split, limit, n_panels, **kw):
        calls.append((name, split, limit, n_panels, kw))
        return iter([stitch(panels(n_panels), height=32, comic_id="x")])

    monkeypatch.setattr(data, "load_hub_strips", fake_load_hub_strips)
    assert [s.comic_id for s in resolve_comics("hf:baulab/openai-comic-strips", limit=5, gap=2)] == ["x"]
    resolve_comics("hf:someone/strips:test", n_panels=4)
    assert calls == [
        ("baulab/openai-comic-strips", "train", 5, 6, {"gap": 2}),
        ("someone/strips", "test", None, 4, {}),
    ]


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
    (strip,) = load_hub_strips(dataset=ds, n_panels=3, height=32)
    assert strip.comic_id == "z" and strip.captions == captions(3)
    assert close(centre(strip, 2), COLOURS[2])
