"""The triage report: what it reads, what it writes, and that input text never becomes markup."""

from __future__ import annotations

import base64
import hashlib
import html.parser
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from exifclip.cli import main
from exifclip.report import (
    build_report,
    content_security_policy,
    json_for_html,
    load_records,
    relative_link,
    reproduce_command,
)
from exifclip.report.thumbnails import overlay_picture, photo_picture, upright

from .report_case import BROKEN_NAME, HOSTILE_EXIF, HOSTILE_NAMES, localize_case


@pytest.fixture(scope="module")
def case(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("report-case")
    out, inputs = localize_case(folder, tiny_model_dir, np.random.default_rng(0), ["--report"])
    return out, inputs


class _Structure(html.parser.HTMLParser):
    """Every start tag and attribute of a page, as a browser's tokenizer would see them."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _structure(page: str) -> list[tuple[str, dict]]:
    parser = _Structure()
    parser.feed(page)
    return parser.tags


def test_localize_report_writes_page_and_records_hashes(case):
    out, inputs = case
    page = out / "report.html"
    assert page.is_file() and (out / "report_files").is_dir()
    records = load_records(out)
    assert [r["status"] for r in records] == ["ok"] * 4 + ["failed"]
    for record, path in zip(records[:4], inputs):
        assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert record["exifclip_version"]


def test_page_structure_is_ours_whatever_the_inputs_hold(case):
    out, _ = case
    page = (out / "report.html").read_text(encoding="utf-8")
    tags = _structure(page)
    scripts = [attrs for tag, attrs in tags if tag == "script"]
    assert scripts == [{"type": "application/json", "id": "report-data"}, {}]
    assert not [t for t, a in tags if t in ("iframe", "object", "embed", "svg") and t != "svg"]
    assert not any(name.startswith("on") for _, attrs in tags for name in attrs), "no event-handler attribute"
    assert not [a for t, a in tags if t == "img" and a.get("src") == "x"]
    assert not [a for t, a in tags if t == "a"], "links are made by the script, from checked relative paths"
    # the only "svg" is the histogram, and it is the page's own
    assert [t for t, _ in tags].count("svg") == 1
    # the data block holds no "<": it cannot close itself
    data = page.split('<script type="application/json" id="report-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and ">" not in data
    items = json.loads(data)["items"]
    names = [i["name"] for i in items]
    assert all(n in names for n in HOSTILE_NAMES) and BROKEN_NAME in names
    hostile = [i for i in items if i["name"] == HOSTILE_NAMES[0]][0]
    assert hostile["exif_tags"]["Make"] == HOSTILE_EXIF["Make"]
    assert HOSTILE_EXIF["Model"] in hostile["exif_text"]


def test_failure_text_is_escaped_in_the_summary(case):
    out, _ = case
    page = (out / "report.html").read_text(encoding="utf-8")
    summary = page.split('id="failures"', 1)[1].split("</section>", 1)[0]
    assert "&lt;svg onload=window.__xss=2&gt;.jpg" in summary
    assert "<svg onload" not in page


def test_content_security_policy_allows_only_the_pages_own_script_and_style(case):
    out, _ = case
    page = (out / "report.html").read_text(encoding="utf-8")
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page).group(1)
    policy = html.unescape(policy)
    script = page.rsplit("<script>", 1)[1].split("</script>", 1)[0]
    style = page.split("<style>", 1)[1].split("</style>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policy
    assert policy == content_security_policy(script, style)
    assert policy.startswith("default-src 'none'")
    assert "http" not in policy and "unsafe" not in policy and "connect-src" not in policy


def test_links_and_previews_are_relative_to_the_page(case):
    out, inputs = case
    page = (out / "report.html").read_text(encoding="utf-8")
    items = json.loads(page.split('id="report-data">', 1)[1].split("</script>", 1)[0])["items"]
    for item in items[:4]:
        kinds = dict(item["links"])
        assert set(kinds) == {"original", "overlay", "heatmap", "mask"}
        for link in [*kinds.values(), item["preview"], item["preview_overlay"]]:
            assert link.startswith(("./", "../")) and ":" not in link
        assert (out / item["preview"]).is_file()
    js_name = [i for i in items if i["name"] == HOSTILE_NAMES[1]][0]
    assert dict(js_name["links"])["original"].endswith("javascript%3Awindow.__xss%3D3.jpg")


def test_thumbnails_are_upright_and_small(case):
    out, _ = case
    page = (out / "report.html").read_text(encoding="utf-8")
    items = json.loads(page.split('id="report-data">', 1)[1].split("</script>", 1)[0])["items"]
    rotated = [i for i in items if i["name"] == "rotated.jpg"][0]
    assert rotated["orientation"] == 6
    assert rotated["thumb_size"][0] < rotated["thumb_size"][1], "stored 160x96, shown 96x160"
    thumb = Image.open(__import__("io").BytesIO(base64.b64decode(rotated["thumb"].split(",", 1)[1])))
    assert thumb.size == tuple(rotated["thumb_size"]) and max(thumb.size) <= 160
    assert rotated["thumb_overlay"] != rotated["thumb"]


def test_reproduce_command_names_the_file_and_settings(case):
    out, inputs = case
    record = load_records(out)[0]
    command = reproduce_command(record, out)
    assert command.startswith(f"exifclip localize {inputs[0]} --out {out} --model ")
    assert "--stride 16" in command


def test_report_command_and_its_errors(case, tmp_path, capsys):
    out, _ = case
    target = tmp_path / "share" / "case.html"
    assert main(["report", str(out), "--out", str(target), "--preview-side", "0", "--title", "<b>case</b>"]) == 0
    page = target.read_text(encoding="utf-8")
    assert "<title>&lt;b&gt;case&lt;/b&gt;</title>" in page
    assert not (tmp_path / "share" / "case_files").exists()
    assert "case.html" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: not a folder" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no results.jsonl" in capsys.readouterr().err
    assert main(["report", str(out), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_load_records_names_bad_lines(tmp_path):
    (tmp_path / "results.jsonl").write_text('{"file": "a.jpg"}\nnot json\n')
    with pytest.raises(ValueError, match=r"results.jsonl:2: not JSON"):
        load_records(tmp_path)
    (tmp_path / "results.jsonl").write_text('["a.jpg"]\n')
    with pytest.raises(ValueError, match=r"results.jsonl:1: not a result record"):
        load_records(tmp_path)


def test_a_moved_results_folder_still_finds_its_pictures(case, tmp_path):
    import shutil

    out, _ = case
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    for path in out.glob("*_overlay.png"):
        path.rename(path.with_suffix(".bak"))
    try:
        records = load_records(moved)
    finally:
        for path in out.glob("*_overlay.bak"):
            path.rename(path.with_suffix(".png"))
    assert all(Path(r["overlay"]).parent == moved for r in records if r["status"] == "ok")


def test_build_report_rejects_bad_sizes(case):
    out, _ = case
    with pytest.raises(ValueError, match="thumb_side"):
        build_report(out, thumb_side=4)
    with pytest.raises(ValueError, match="preview_side"):
        build_report(out, preview_side=-1)


def test_json_for_html_cannot_close_its_block():
    text = json_for_html({"a": "</script><!-- \u2028 & >"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><!-- \u2028 & >"}


def test_relative_link_never_makes_a_scheme(tmp_path):
    assert relative_link(tmp_path / "javascript:x.png", tmp_path / "r.html") == "./javascript%3Ax.png"
    assert relative_link(tmp_path / "a#b?c.png", tmp_path / "sub" / "r.html") == "../a%23b%3Fc.png"


def test_upright_pictures_follow_the_orientation_and_overlay_stays_aligned(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # left half white
    shown = np.asarray(upright(Image.fromarray(pixels), 6))
    assert shown.shape == (40, 20, 3) and shown[:20].mean() > 200 and shown[20:].mean() < 50  # left -> top
    heat = tmp_path / "h.png"
    Image.fromarray(pixels).save(heat)
    photo = photo_picture(Image.fromarray(pixels), 40, orientation=6)
    both = np.asarray(overlay_picture(None, heat, photo, 6, 40))
    assert both.shape == (40, 20, 3) and both[:20].mean() > both[20:].mean()
    assert overlay_picture(None, None, photo, 6, 40) is None


def test_report_with_the_learned_exif_consistency(case, tmp_path):
    out, _ = case
    target = tmp_path / "c.html"
    assert main(["report", str(out), "--out", str(target), "--exif-consistency", "--device", "cpu",
                 "--preview-side", "0"]) == 0
    page = target.read_text(encoding="utf-8")
    data = json.loads(page.split('id="report-data">', 1)[1].split("</script>", 1)[0])
    scored = {i["name"]: i.get("exif_consistency") for i in data["items"]}
    assert set(scored["plain.jpg"]) == {"all", "camera", "exposure", "processing"}
    assert all(v is None or 0 <= v <= 1 for v in scored["plain.jpg"].values())
    assert scored[BROKEN_NAME] is None
    assert "ExifConsistencyScorer" in data["summary"]["exif_consistency"]


def test_nan_scores_and_a_tiny_thumb_side(tmp_path, capsys):
    (tmp_path / "results.jsonl").write_text('{"file": "a.jpg", "status": "ok", "score": NaN}\n')
    page = build_report(tmp_path).read_text(encoding="utf-8")
    assert '"score": null' in page
    assert main(["report", str(tmp_path), "--thumb-side", "4"]) == 2
    assert "--thumb-side must be at least 16 pixels, got 4" in capsys.readouterr().err
