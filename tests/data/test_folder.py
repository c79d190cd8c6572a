"""Tests for imagegen.data.folder (captioned folders, bad-data policy) and imagegen.data.transforms."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imagegen.data import folder
from imagegen.data.folder import CaptionedFolderDataset
from imagegen.data.transforms import (
    load_image,
    parse_color,
    pil_to_tensor,
    resize_center_crop,
    to_rgb,
)
from imagegen.utils.images import tensor_to_pil

SIDE = 8  # test images are SIDE x SIDE and read at resolution SIDE, so resizing is the identity


def _rgb_at(item: dict, row: int = 0, col: int = 0) -> tuple[int, ...]:
    """The uint8 RGB value of one pixel of a dataset item's [-1, 1] image."""
    return tuple(int(v) for v in ((item["image"][:, row, col] + 1) * 127.5).round())


def _noise_rgb(seed: int, side: int = SIDE) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8))


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _ramp16() -> np.ndarray:
    """A 16-bit grey ramp [SIDE, SIDE] covering 0..65535, including values that 8-bit clipping would ruin."""
    return np.linspace(0, 65535, SIDE * SIDE).round().astype(np.uint16).reshape(SIDE, SIDE)


# --------------------------------------------------------------------------------------------
# transforms
# --------------------------------------------------------------------------------------------


def test_parse_color_names_hex_and_errors():
    assert parse_color("white") == (255, 255, 255)
    assert parse_color("Gray") == (128, 128, 128)
    assert parse_color("#102aFf") == (16, 42, 255)
    with pytest.raises(ValueError, match="#rrggbb"):
        parse_color("#12345g")
    with pytest.raises(ValueError, match="white"):
        parse_color("mauve")


def test_sixteen_bit_ramp_is_scaled_not_clipped(tmp_path):
    ramp = _ramp16()
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    assert Image.open(tmp_path / "ramp.png").mode == "I;16"
    rgb = np.asarray(load_image(tmp_path / "ramp.png")).astype(int)  # [H, W, 3]
    expected = np.round(ramp.astype(float) * 255 / 65535)
    assert np.abs(rgb - expected[..., None]).max() <= 1
    assert rgb.min() == 0 and rgb.max() == 255 and len(np.unique(rgb)) > 40
    as_int32 = Image.fromarray(ramp.astype(np.int32))  # mode I, as Pillow opens some 16-bit files
    assert as_int32.mode == "I"
    assert np.abs(np.asarray(to_rgb(as_int32)).astype(int) - expected[..., None]).max() <= 1


@pytest.mark.parametrize(
    ("background", "expected"),
    [("white", (255, 127, 127)), ("black", (128, 0, 0)), ("#0000ff", (128, 0, 127))],
)
def test_rgba_is_composited_on_the_background(background, expected):
    image = Image.new("RGBA", (2, 2), (255, 0, 0, 128))
    got = to_rgb(image, parse_color(background)).getpixel((0, 0))
    assert all(abs(a - b) <= 1 for a, b in zip(got, expected))


def test_palette_transparency_la_l_and_cmyk_convert_correctly():
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 1  # index 1 (green) is see-through
    assert list(to_rgb(palette, (0, 0, 255)).getdata()) == [(255, 0, 0), (0, 0, 255)]
    assert to_rgb(Image.new("LA", (1, 1), (10, 0)), (7, 8, 9)).getpixel((0, 0)) == (7, 8, 9)
    assert to_rgb(Image.new("L", (1, 1), 77)).getpixel((0, 0)) == (77, 77, 77)
    assert to_rgb(Image.new("CMYK", (1, 1), (255, 0, 0, 0))).getpixel((0, 0)) == (0, 255, 255)


def test_float_images_are_refused():
    with pytest.raises(ValueError, match="unsupported image mode 'F'"):
        to_rgb(Image.new("F", (2, 2)))


def test_resize_center_crop_keeps_the_centre_square():
    wide = Image.new("RGB", (90, 30), (255, 0, 0))
    wide.paste((0, 255, 0), (30, 0, 60, 30))  # the centre 30 x 30 is green, the sides red
    out = resize_center_crop(wide, 10)
    assert out.size == (10, 10)
    pixels = np.asarray(out).astype(int)
    assert (pixels[:, 1:-1, 1] >= 250).all() and (pixels[:, 1:-1, 0] <= 5).all()
    tall = resize_center_crop(Image.new("RGB", (7, 21), (9, 9, 9)), 16)  # enlarging
    assert tall.size == (16, 16) and tall.getpixel((8, 8)) == (9, 9, 9)


def test_tensor_round_trip_and_range():
    image = _noise_rgb(0)
    tensor = pil_to_tensor(image)
    assert tensor.shape == (3, SIDE, SIDE) and tensor.dtype == torch.float32
    assert tensor.min() >= -1 and tensor.max() <= 1
    assert pil_to_tensor(Image.new("RGB", (1, 1), (0, 255, 0)))[:, 0, 0].tolist() == [-1.0, 1.0, -1.0]
    assert np.array_equal(np.asarray(tensor_to_pil(tensor[None])[0]), np.asarray(image))
    assert tensor_to_pil(torch.full((1, 3, 2, 2), 5.0))[0].getpixel((0, 0)) == (255, 255, 255)  # clamped


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    Image.new("RGB", (40, 20)).save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").size == (20, 40)


# --------------------------------------------------------------------------------------------
# caption formats
# --------------------------------------------------------------------------------------------


def test_metadata_jsonl_with_default_and_custom_columns(tmp_path):
    (tmp_path / "train").mkdir()
    records = [{"file_name": f"train/{i}.png", "text": f"caption {i}", "prompt": f"p{i}"} for i in range(3)]
    for i in range(3):
        _noise_rgb(i).save(tmp_path / "train" / f"{i}.png")
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    _write_csv(tmp_path / "captions.csv", ["file", "text"], [["train/0.png", "ignored"]])
    dataset = CaptionedFolderDataset(tmp_path, SIDE)
    assert dataset.source == "metadata.jsonl" and dataset.caption_column == "text"
    assert [dataset.caption(i) for i in range(len(dataset))] == ["caption 0", "caption 1", "caption 2"]
    assert torch.equal(dataset[1]["image"], pil_to_tensor(_noise_rgb(1)))
    assert dataset[2]["caption"] == "caption 2" and not dataset.skipped
    custom = CaptionedFolderDataset(tmp_path, SIDE, caption_column="prompt")
    assert custom.caption(0) == "p0"
    with pytest.raises(ValueError, match=r"no caption column 'caption'.*'file_name', 'text', 'prompt'"):
        CaptionedFolderDataset(tmp_path, SIDE, caption_column="caption")
    assert CaptionedFolderDataset(tmp_path, SIDE, source="captions.csv").caption(0) == "ignored"


def test_missing_caption_column_names_the_available_keys(tmp_path):
    _noise_rgb(0).save(tmp_path / "a.png")
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "prompt": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"tried \['text', 'caption', 'label'\].*'prompt'.*caption_column="):
        CaptionedFolderDataset(tmp_path, SIDE)


def test_csv_paths_resolve_in_the_common_image_subfolder(tmp_path):
    (tmp_path / "png72").mkdir()
    (tmp_path / "other").mkdir()
    for name in ("a.png", "b.png"):
        _noise_rgb(len(name)).save(tmp_path / "png72" / name)
    _noise_rgb(9).save(tmp_path / "c.png")  # at root: found there first
    _noise_rgb(9).save(tmp_path / "other" / "a.png")  # fewer references live here: not chosen
    rows = [["a.png", "1", "apple"], ["b.png", "2", "banana"], ["c.png", "3", "cherry"]]
    rows.append(["./png72/b.png", "", "b2"])
    _write_csv(tmp_path / "captions.csv", ["file", "codepoints", "label"], rows)
    dataset = CaptionedFolderDataset(tmp_path, SIDE)
    assert dataset.caption_column == "label"
    assert dataset._paths == ["png72/a.png", "png72/b.png", "c.png", "png72/b.png"]
    assert dataset.skipped == {folder.NO_CAPTION: 1}  # other/a.png
    forced = CaptionedFolderDataset(tmp_path, SIDE, image_dir="other", file_column="file")
    assert forced._paths == ["other/a.png"] and forced.skipped[folder.NO_IMAGE] == 3
    absolute = CaptionedFolderDataset(tmp_path, SIDE, image_dir=str(tmp_path / "png72"))
    assert absolute._paths == ["png72/a.png", "png72/b.png"]
    assert absolute.skipped == {folder.NO_IMAGE: 2, folder.NO_CAPTION: 2}  # c.png, other/a.png


def test_sidecar_txt_files(tmp_path):
    (tmp_path / "sub").mkdir()
    _noise_rgb(0).save(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("a red  circle\n")
    _noise_rgb(1).save(tmp_path / "sub" / "b.jpg")
    (tmp_path / "sub" / "b.txt").write_text("\ufeffa blue\nsquare\n")  # BOM and two lines
    _noise_rgb(2).save(tmp_path / "c.png")  # no caption
    (tmp_path / "orphan.txt").write_text("no image")
    (tmp_path / "blank.png").write_bytes((tmp_path / "a.png").read_bytes())
    (tmp_path / "blank.txt").write_text("  \n")
    dataset = CaptionedFolderDataset(tmp_path, SIDE)
    assert dataset.source == "txt"
    assert [dataset.caption(i) for i in range(len(dataset))] == ["a red circle", "a blue square"]
    assert dataset.skipped == {folder.NO_CAPTION: 1, folder.NO_IMAGE: 1, folder.EMPTY_CAPTION: 1}


def test_missing_root_and_empty_folders_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        CaptionedFolderDataset(tmp_path / "does-not-exist", SIDE)
    with pytest.raises(ValueError, match=r"no captions found in .*metadata.jsonl.*captions.csv.*\.txt"):
        CaptionedFolderDataset(tmp_path, SIDE)
    (tmp_path / "zero.png").write_bytes(b"")
    _write_csv(tmp_path / "captions.csv", ["file", "text"], [["zero.png", "nothing"]])
    with pytest.raises(ValueError, match=rf"no valid image-caption pair in {tmp_path}.*metadata.jsonl"):
        CaptionedFolderDataset(tmp_path, SIDE)


# --------------------------------------------------------------------------------------------
# bad data
# --------------------------------------------------------------------------------------------


def _valid_images() -> dict[str, Image.Image]:
    palette = Image.new("P", (SIDE, SIDE), 0)
    palette.putpalette([200, 100, 50] + [0] * 765)
    rgba = Image.new("RGBA", (SIDE, SIDE), (0, 0, 0, 0))  # fully transparent -> background
    rgba.putpixel((SIDE - 1, SIDE - 1), (0, 255, 0, 255))
    return {
        "gray.png": Image.new("L", (SIDE, SIDE), 60),
        "cmyk.tif": Image.new("CMYK", (SIDE, SIDE), (0, 255, 0, 0)),
        "ramp16.png": Image.fromarray(_ramp16()),
        "palette.png": palette,
        "rgba.png": rgba,
        "rgb.jpg": Image.new("RGB", (SIDE, SIDE), (250, 250, 250)),
    }


@pytest.fixture()
def messy_folder(tmp_path: Path) -> Path:
    """Six valid images (L, CMYK, I;16, P, RGBA, RGB) and exactly five kinds of broken data."""
    for name, image in _valid_images().items():
        image.save(tmp_path / name)
    (tmp_path / "zero.png").write_bytes(b"")
    png = io.BytesIO()
    _noise_rgb(3, side=32).save(png, "PNG")
    (tmp_path / "truncated.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    (tmp_path / "text.jpg").write_text("this is not a JPEG\n" * 20)
    _noise_rgb(4).save(tmp_path / "uncaptioned.png")
    names = list(_valid_images()) + ["zero.png", "truncated.png", "text.jpg", "missing.png"]
    _write_csv(tmp_path / "captions.csv", ["image", "caption"], [[n, f"a {n}"] for n in names])
    return tmp_path


def test_broken_files_are_skipped_and_counted_by_reason(messy_folder, caplog):
    with caplog.at_level(logging.WARNING, logger="imagegen.data.folder"):
        dataset = CaptionedFolderDataset(messy_folder, SIDE, background="#204060")
    assert dataset.skipped == {
        folder.EMPTY_FILE: 1,
        folder.CORRUPT_IMAGE: 1,
        folder.NOT_AN_IMAGE: 1,
        folder.NO_CAPTION: 1,
        folder.NO_IMAGE: 1,
    }
    assert [dataset.caption(i) for i in range(len(dataset))] == [f"a {n}" for n in _valid_images()]
    assert len(caplog.records) == 1 and "skipped 5" in caplog.records[0].getMessage()
    report = dataset.report()
    for example in ("zero.png", "truncated.png", "text.jpg", "uncaptioned.png", "missing.png"):
        assert example in report


def test_valid_modes_convert_to_the_right_pixels(messy_folder):
    dataset = CaptionedFolderDataset(messy_folder, SIDE, background="#204060")
    items = {dataset.caption(i): dataset[i] for i in range(len(dataset))}
    for item in items.values():
        assert item["image"].shape == (3, SIDE, SIDE) and item["image"].dtype == torch.float32
        assert item["image"].min() >= -1 and item["image"].max() <= 1
    assert _rgb_at(items["a gray.png"]) == (60, 60, 60)
    assert _rgb_at(items["a cmyk.tif"]) == (255, 0, 255)
    assert _rgb_at(items["a palette.png"]) == (200, 100, 50)
    assert _rgb_at(items["a rgba.png"]) == (0x20, 0x40, 0x60)
    assert _rgb_at(items["a rgba.png"], SIDE - 1, SIDE - 1) == (0, 255, 0)
    ramp = np.round(_ramp16().astype(float) * 255 / 65535)
    got = ((items["a ramp16.png"]["image"][0] + 1) * 127.5).round().numpy()
    assert np.abs(got - ramp).max() <= 1


def test_decode_failure_substitutes_the_next_valid_item(tmp_path, caplog):
    jpeg = io.BytesIO()
    _noise_rgb(0, side=64).save(jpeg, "JPEG")
    (tmp_path / "0.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])  # passes verify()
    _noise_rgb(1).save(tmp_path / "1.png")
    _write_csv(tmp_path / "captions.csv", ["file", "text"], [["0.jpg", "cut"], ["1.png", "whole"]])
    dataset = CaptionedFolderDataset(tmp_path, SIDE)
    assert len(dataset) == 2 and not dataset.skipped
    with caplog.at_level(logging.WARNING, logger="imagegen.data.folder"):
        item = dataset[0]
        again = dataset[0]
    assert item["caption"] == again["caption"] == "whole"
    assert torch.equal(item["image"], pil_to_tensor(_noise_rgb(1)))
    assert dataset.skipped == {folder.DECODE_FAILED: 1}
    assert sum("failed to decode" in r.getMessage() for r in caplog.records) == 1


def test_report_is_logged_once_per_epoch(messy_folder, caplog):
    dataset = CaptionedFolderDataset(messy_folder, SIDE)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="imagegen.data.folder"):
        dataset.set_epoch(0)  # the construction already reported epoch 0
        dataset.set_epoch(1)
        dataset.set_epoch(1)
        dataset.set_epoch(2)
    assert [r.getMessage() for r in caplog.records] == [dataset.report()] * 2


def test_hflip_is_deterministic_per_seed_epoch_and_index(tmp_path):
    rows = []
    for i in range(12):
        _noise_rgb(i).save(tmp_path / f"{i}.png")
        rows.append([f"{i}.png", f"image {i}"])
    _write_csv(tmp_path / "captions.csv", ["file", "text"], rows)
    plain = CaptionedFolderDataset(tmp_path, SIDE)
    flipping = CaptionedFolderDataset(tmp_path, SIDE, hflip=True, seed=3)

    def pattern(dataset: CaptionedFolderDataset) -> list[bool]:
        flips = []
        for i in range(len(dataset)):
            image, reference = dataset[i]["image"], plain[i]["image"]
            assert torch.equal(image, reference) or torch.equal(image, reference.flip(-1))
            flips.append(not torch.equal(image, reference))
        return flips

    first = pattern(flipping)
    assert 0 < sum(first) < len(first) and pattern(flipping) == first
    assert pattern(CaptionedFolderDataset(tmp_path, SIDE, hflip=True, seed=3)) == first
    flipping.set_epoch(1)
    assert pattern(flipping) != first
    assert not any(pattern(plain))


# --------------------------------------------------------------------------------------------
# reference data (../shared/data), skipped when absent
# --------------------------------------------------------------------------------------------


def test_noto_emoji_loads_all_glyphs(shared_data):
    root = shared_data / "noto-emoji"
    dataset = CaptionedFolderDataset(root, 32)
    assert len(dataset) == len(list((root / "png72").glob("*.png"))) == 3845
    assert not dataset.skipped and dataset.caption_column == "label"
    assert dataset.caption(0) == "number sign"
    for index in (0, 1234, 3844):  # a few decodes only: keep the test fast
        item = dataset[index]
        assert item["image"].shape == (3, 32, 32) and item["caption"] == dataset.caption(index)
        assert _rgb_at(item) == (255, 255, 255)  # transparent corner composited on white


def test_captioned_photos_load_with_colour_management(shared_data):
    root = shared_data / "captioned-photos"
    dataset = CaptionedFolderDataset(root, 64)
    with (root / "captions.csv").open() as handle:
        expected = [row["caption"] for row in csv.DictReader(handle)]
    assert [dataset.caption(i) for i in range(len(dataset))] == expected and len(expected) == 8
    assert all(dataset[i]["image"].shape == (3, 64, 64) for i in range(len(dataset)))
    adobe_rgb = np.asarray(load_image(root / "rocket.jpg")).astype(int)
    naive = np.asarray(Image.open(root / "rocket.jpg").convert("RGB")).astype(int)
    assert np.abs(adobe_rgb - naive).max() > 10  # Adobe RGB pixels were converted to sRGB
    srgb = np.asarray(load_image(root / "astronaut.png"))
    assert np.array_equal(srgb, np.asarray(Image.open(root / "astronaut.png").convert("RGB")))


def test_files_outside_the_root_are_refused_and_counted(tmp_path):
    """Issue 15, item 10: '../x.png', an absolute path and a symlink leading out of data.path are
    never opened; they are skipped under 'outside data.path'."""
    root, outside = tmp_path / "data", tmp_path / "secret"
    root.mkdir(), outside.mkdir()
    _noise_rgb(0).save(root / "ok.png")
    _noise_rgb(1).save(outside / "x.png")
    (root / "link.png").symlink_to(outside / "x.png")
    rows = [
        ("ok.png", "fine"),
        ("../secret/x.png", "up"),
        (str(outside / "x.png"), "absolute"),
        ("link.png", "l"),
    ]
    (root / "metadata.jsonl").write_text("\n".join(json.dumps({"file_name": f, "text": t}) for f, t in rows))
    dataset = CaptionedFolderDataset(root, SIDE)
    assert [dataset.caption(i) for i in range(len(dataset))] == ["fine"]
    assert dataset.skipped[folder.OUTSIDE_ROOT] == 3
