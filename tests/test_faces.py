"""Face stage and `lightfer predict`: the astronaut from scikit-image, tiled, rotated and saved in
every pixel format; a planted bad file of each kind; the same top class on every runtime."""

from __future__ import annotations

import hashlib
import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from lightfer_utils.cli import main
from lightfer_utils.runtime.faces import FaceStage
from lightfer_utils.runtime.media import ImageReadError, read_image
from lightfer_utils.runtime.tagging import expand_inputs, predict_files
from lightfer_utils.runtime.predictor import load_predictor

ASTRONAUT_BOX = (179, 83, 266, 170)  # measured once; the face is on the upper middle of the image


@pytest.fixture(scope="module")
def stage() -> FaceStage:
    return FaceStage()


@pytest.fixture(scope="module")
def astronaut_rgb() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """One small randomly initialised network in all three formats."""
    import tf_keras as keras

    from lightfer_utils.training.export import export_onnx
    from lightfer_utils.training.models import build_model
    from lightfer_utils.training.quantize import convert_tflite

    keras.utils.set_random_seed(3)
    model = build_model("light_fer_net", widths=(8, 16, 16, 16), blocks=(0, 1, 1, 1), dropout=0.0)
    folder = tmp_path_factory.mktemp("models")
    paths = {"keras": folder / "m.keras", "onnx": folder / "m.onnx", "tflite": folder / "m.tflite"}
    model.save(paths["keras"])
    export_onnx(model, paths["onnx"])
    paths["tflite"].write_bytes(convert_tflite(model, "fp32"))
    return paths


def near(box, expected, tolerance=12):
    return all(abs(a - b) <= tolerance for a, b in zip(box, expected))


def same_face(box, expected, scale=1.0):
    """Same centre (within 10 % of the face size) and a size within 40 %: a detection at another
    image scale (large images are detected on a downscaled copy) frames the face a little differently."""
    size = (expected[2] - expected[0]) * scale
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    expected_centre = np.array([(expected[0] + expected[2]) / 2, (expected[1] + expected[3]) / 2]) * scale
    return np.abs(centre - expected_centre).max() <= 0.1 * size and abs((box[2] - box[0]) - size) <= 0.4 * size


def test_astronaut_has_one_face_with_landmarks_and_a_48x48_crop(stage, astronaut_rgb):
    faces = stage(cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY))
    assert len(faces) == 1
    face = faces[0]
    assert near(face.box, ASTRONAUT_BOX)
    assert face.landmarks.shape == (68, 2) and face.crop.shape == (48, 48) and face.crop.dtype == np.uint8
    left, top, right, bottom = face.box
    assert ((face.landmarks[:, 0] > left - 20) & (face.landmarks[:, 0] < right + 20)).all()
    assert abs(face.roll_degrees) < 10


def test_tiled_image_gives_one_result_per_face(astronaut_rgb):
    gray = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY)
    stage = FaceStage(min_score=0.1)  # at full resolution the mission patch scores ~0.02 in one tile
    faces = sorted(stage(np.hstack([gray, gray, gray])), key=lambda f: f.box[0])
    assert len(faces) == 3
    for i, face in enumerate(faces):
        assert same_face(face.box, (ASTRONAUT_BOX[0] + 512 * i, ASTRONAUT_BOX[1], ASTRONAUT_BOX[2] + 512 * i, ASTRONAUT_BOX[3]))


@pytest.mark.parametrize("angle", [-15, 15])
def test_alignment_levels_a_tilted_face(stage, astronaut_rgb, angle):
    gray = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY)
    upright = stage(gray)[0]
    centre = tuple(float(v) for v in np.mean(np.reshape(upright.box, (2, 2)), axis=0))
    tilted = cv2.warpAffine(gray, cv2.getRotationMatrix2D(centre, angle, 1.0), gray.shape[::-1], borderMode=cv2.BORDER_REPLICATE)
    face = stage(tilted)[0]
    assert face.roll_degrees - upright.roll_degrees == pytest.approx(-angle, abs=4)
    correlation = np.corrcoef(face.crop.ravel().astype(float), upright.crop.ravel().astype(float))[0, 1]
    assert correlation > 0.8


def test_images_without_a_face(stage):
    rng = np.random.default_rng(0)
    assert stage(rng.integers(0, 256, (240, 320), dtype=np.uint8)) == []
    assert stage(np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))) == []


def test_a_large_min_face_detects_on_a_smaller_copy_and_boxes_at_full_resolution(astronaut_rgb):
    stage = FaceStage(min_face=400)  # the ~700 px face is found on a copy scaled by 80/400
    big = cv2.resize(cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY), (4096, 4096), interpolation=cv2.INTER_CUBIC)
    faces = stage(big)
    assert len(faces) == 1
    assert same_face(faces[0].box, ASTRONAUT_BOX, scale=8)


def write_pixel_formats(folder: Path, rgb: np.ndarray) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(rgb)
    gray = np.asarray(image.convert("L"))
    paths = {"rgb.jpg": image, "gray.png": image.convert("L"), "palette.png": image.convert("P"),
             "rgba.png": image.convert("RGBA"), "gray16.png": Image.fromarray(gray.astype(np.uint16) * 257)}
    for name, picture in paths.items():
        picture.save(folder / name)
    return [folder / name for name in paths]


def test_every_pixel_format_is_read_as_8_bit_gray(tmp_path, astronaut_rgb):
    reference = np.asarray(Image.fromarray(astronaut_rgb).convert("L"), dtype=float)
    for path in write_pixel_formats(tmp_path, astronaut_rgb):
        gray = read_image(path)
        assert gray.dtype == np.uint8 and gray.shape == (512, 512), path.name
        assert np.abs(gray - reference).mean() < 12, path.name  # palette and JPEG are lossy


def plant_bad_files(folder: Path) -> dict[str, str]:
    """name -> the reason the error must give."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image at all")
    good = folder / "whole.png"
    Image.fromarray(np.full((64, 64), 200, np.uint8)).save(good)
    (folder / "truncated.png").write_bytes(good.read_bytes()[:60])
    good.unlink()
    return {"empty.jpg": "empty file", "notes.png": "not an image", "truncated.png": "damaged or truncated"}


def test_each_bad_file_gets_its_own_reason(tmp_path):
    for name, reason in plant_bad_files(tmp_path).items():
        with pytest.raises(ImageReadError, match=reason) as caught:
            read_image(tmp_path / name)
        assert name in str(caught.value)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def test_folder_run_goes_past_bad_files_and_modifies_nothing(tmp_path, astronaut_rgb, models, stage):
    folder = tmp_path / "inputs"
    write_pixel_formats(folder / "formats", astronaut_rgb)
    reasons = plant_bad_files(folder / "bad")
    Image.fromarray(np.full((100, 100), 90, np.uint8)).save(folder / "blank.png")
    before = digest(folder)
    run = predict_files(expand_inputs([folder]), load_predictor(models["onnx"]), stage, progress=False)
    assert digest(folder) == before
    assert len(run.rows) == 5 and {Path(r["file"]).name for r in run.rows} == {p.name for p in (folder / "formats").iterdir()}
    assert len(run.problems) == len(reasons) and run.done == run.total == 5 + len(reasons) + 1
    assert [Path(p).name for p in run.files_without_faces] == ["blank.png"]
    with pytest.raises(FileNotFoundError, match="missing.jpg"):  # a typo is refused before any work
        expand_inputs([folder, tmp_path / "missing.jpg"])


def test_every_runtime_gives_the_same_top_class(astronaut_rgb, models, stage):
    crops = np.stack([f.crop for f in stage(cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY))]).astype(np.float32)
    outputs = {fmt: load_predictor(path)(crops) for fmt, path in models.items()}
    assert {fmt: int(p.argmax()) for fmt, p in outputs.items()} == {fmt: int(outputs["keras"].argmax()) for fmt in outputs}
    np.testing.assert_allclose(outputs["onnx"], outputs["keras"], atol=1e-5)
    np.testing.assert_allclose(outputs["tflite"], outputs["keras"], atol=1e-5)


def test_video_every_nth_frame(tmp_path, astronaut_rgb, models, stage):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (512, 512))
    for _ in range(10):
        writer.write(cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    run = predict_files(expand_inputs([video]), load_predictor(models["tflite"]), stage, every=3, progress=False,
                        annotate_dir=tmp_path / "annotated")
    astronaut = [r["frame"] for r in run.rows if near((r["left"], r["top"], r["right"], r["bottom"]), ASTRONAUT_BOX)]
    assert astronaut == [0, 3, 6, 9]  # (MJPG artefacts also make dlib see a face in the mission patch)
    annotated = cv2.VideoCapture(str(tmp_path / "annotated" / "clip_annotated.mp4"))
    assert annotated.get(cv2.CAP_PROP_FPS) == pytest.approx(10 / 3, abs=0.01)  # the source's rate over the frames kept
    ok, frame = annotated.read()
    annotated.release()
    assert ok and np.abs(frame[..., 0].astype(int) - frame[..., 2]).mean() > 5  # colour kept


def test_annotated_copies_keep_colour_and_none_is_made_without_a_face(tmp_path, astronaut_rgb, models, capsys):
    Image.fromarray(astronaut_rgb).save(tmp_path / "astronaut.png")
    Image.fromarray(np.full((200, 300, 3), 90, np.uint8)).save(tmp_path / "wall.png")
    video = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for _ in range(3):
        writer.write(np.full((64, 64, 3), 90, np.uint8))
    writer.release()
    out = tmp_path / "annotated"
    assert main(["predict", str(tmp_path), "--model", str(models["onnx"]), "--annotate", str(out)]) == 0
    (written,) = [p for p in out.rglob("*") if p.is_file()]
    assert written.name == "astronaut_annotated.png"
    copy = cv2.imread(str(written))
    assert copy.shape == astronaut_rgb.shape and np.abs(copy[..., 0].astype(int) - copy[..., 2]).mean() > 20


def test_predict_command(tmp_path, astronaut_rgb, models, capsys):
    image = tmp_path / "astronaut.png"
    Image.fromarray(astronaut_rgb).save(image)
    plant_bad_files(tmp_path / "bad")
    out_csv, out_json = tmp_path / "faces.csv", tmp_path / "faces.json"
    args = ["predict", str(image), str(tmp_path / "bad"), "--model", str(models["onnx"]), "--csv", str(out_csv),
            "--json", str(out_json), "--annotate", str(tmp_path / "annotated")]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "astronaut.png" in captured.out and "skipped:" in captured.err and "empty file" in captured.err
    rows = out_csv.read_text().splitlines()
    assert len(rows) == 2 and rows[0].startswith("file,frame,face,left,top,right,bottom,x,y,w,h,score,p_angry")
    records = [json.loads(line) for line in out_json.read_text().splitlines()]
    assert [r["status"] for r in records].count("skipped") == 3 and [r["status"] for r in records].count("face") == 1
    assert (tmp_path / "annotated" / "astronaut_annotated.png").exists()
    assert main(args) == 2  # existing outputs are never replaced silently
    assert "exists" in capsys.readouterr().err
    assert main(["predict", str(image), str(tmp_path / "bad"), "--model", str(models["onnx"]), "--strict"]) == 1
    assert main(["predict", str(image), "--model", str(tmp_path / "absent.onnx")]) == 2
    assert "model not found: " in capsys.readouterr().err


def test_video_mode_follows_the_face_like_full_detection_with_a_tenth_of_the_full_searches():
    from lightfer_utils.runtime.face_photos import moving_face_frames

    frames = moving_face_frames(40)
    every_frame, followed = FaceStage(), FaceStage(full_detect_every=10)
    for frame in frames:
        expected, got = every_frame(frame), followed(frame)
        assert len(expected) == len(got) == 1
        assert same_face(got[0].box, expected[0].box)
    assert every_frame.times.full_detections == 40 and followed.times.full_detections == 4


def test_video_mode_searches_the_whole_frame_again_when_the_face_is_lost():
    from lightfer_utils.runtime.face_photos import benchmark_frames

    first, elsewhere = benchmark_frames(2)  # the same face at two distant places
    stage = FaceStage(full_detect_every=100)
    before = stage(first)
    assert len(stage(np.full_like(first, 128))) == 0  # gone: a full search, which finds nothing
    after = stage(elsewhere)
    assert len(before) == len(after) == 1 and not same_face(after[0].box, before[0].box)
    assert stage.times.full_detections == 3
    stage.reset()
    stage(first)
    assert stage.times.full_detections == 4


def test_video_mode_rejects_a_negative_interval():
    with pytest.raises(ValueError, match="full_detect_every"):
        FaceStage(full_detect_every=-1)


@pytest.fixture(scope="module")
def blaze() -> FaceStage:
    return FaceStage(detector="blazeface")


def test_blazeface_finds_the_astronaut_with_its_eyes_level_and_a_score(blaze, astronaut_rgb):
    (face,) = blaze(cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY))
    assert same_face(face.box, ASTRONAUT_BOX) and 0.5 <= face.score <= 1
    assert face.landmarks.shape == (6, 2) and face.crop.shape == (48, 48) and abs(face.roll_degrees) < 10
    eyes = face.landmarks[:2]
    assert ((eyes[:, 0] > face.box[0]) & (eyes[:, 0] < face.box[2]) & (eyes[:, 1] < (face.box[1] + face.box[3]) / 2)).all()
    assert blaze(np.full((480, 640), 128, np.uint8)) == []


def test_blazeface_levels_a_tilted_face(blaze, astronaut_rgb):
    gray = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY)
    tilted = cv2.warpAffine(gray, cv2.getRotationMatrix2D((222, 126), 15, 1.0), gray.shape[::-1])
    (face,) = blaze(tilted)
    assert abs(abs(face.roll_degrees) - 15) < 6


def test_blazeface_finds_a_small_face_in_a_large_image_through_tiles(astronaut_rgb):
    """The whole-image pass sees a 90 px face of a 4032 px photo at 4 px: the tiles of 8 x min-face
    find it, and --min-face larger than the face leaves it out."""
    gray = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY)
    photo = np.full((3024, 4032), 120, np.uint8)
    photo[1500:1800, 2500:2800] = cv2.resize(gray[0:300, 100:400], (300, 300))
    (face,) = FaceStage(detector="blazeface", min_face=80)(photo)
    assert 2540 < (face.box[0] + face.box[2]) / 2 < 2760 and 1500 < (face.box[1] + face.box[3]) / 2 < 1750
    assert FaceStage(detector="blazeface", min_face=400)(photo) == []


def test_blazeface_video_mode_follows_the_face_with_its_short_range_model():
    from lightfer_utils.runtime.face_photos import moving_face_frames

    frames = moving_face_frames(20)
    every_frame, followed = FaceStage(detector="blazeface"), FaceStage(detector="blazeface", full_detect_every=10)
    for frame in frames:
        expected, got = every_frame(frame), followed(frame)
        assert len(expected) == len(got) == 1 and same_face(got[0].box, expected[0].box)
    assert followed.times.full_detections == 2


@pytest.mark.parametrize("settings, message", [
    ({"detector": "yolo"}, "detector must be one of hog, blazeface"),
    ({"alignment": "eyes"}, "HOG finds no eye points"),
    ({"detector": "blazeface", "min_score": 1.5}, "between 0 and 1"),
    ({"min_score": float("nan")}, "finite number"),
])
def test_impossible_face_stage_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        FaceStage(**settings)


@pytest.mark.parametrize("damage", ["missing", "changed"])
def test_a_missing_or_changed_detector_file_is_one_line(tmp_path, monkeypatch, capsys, astronaut_rgb, models, damage):
    from lightfer_utils.runtime import blazeface

    folder = tmp_path / "detectors"
    shutil.copytree(blazeface.DETECTOR_DIR, folder)
    target = folder / blazeface.VARIANTS["full"].file
    if damage == "missing":
        target.unlink()
    else:
        damaged = bytearray(target.read_bytes())
        damaged[len(damaged) // 2] ^= 0xFF
        target.write_bytes(bytes(damaged))
    monkeypatch.setattr(blazeface, "DETECTOR_DIR", folder)
    monkeypatch.setattr(blazeface.BlazeFace.__init__, "__defaults__", ("full", 0.5, 1, folder))
    image = tmp_path / "astronaut.png"
    Image.fromarray(astronaut_rgb).save(image)
    assert main(["predict", str(image), "--model", str(models["onnx"]), "--detector", "blazeface"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lightfer: error: {target}: the face detector's model file is")


def test_predict_with_blazeface_writes_scores_and_boxes_both_ways(tmp_path, astronaut_rgb, models, capsys):
    image = tmp_path / "astronaut.png"
    Image.fromarray(astronaut_rgb).save(image)
    out_csv = tmp_path / "faces.csv"
    assert main(["predict", str(image), "--model", str(models["onnx"]), "--detector", "blazeface", "--csv", str(out_csv)]) == 0
    (row,) = list(csv.DictReader(out_csv.open()))
    assert float(row["score"]) >= 0.5 and int(row["w"]) == int(row["right"]) - int(row["left"]) and row["x"] == row["left"]
    capsys.readouterr()
    assert main(["predict", str(image), "--model", str(models["onnx"]), "--detector", "blazeface", "--min-score", "0.99"]) == 0
    assert "no faces found" in capsys.readouterr().out


def test_blazeface_sees_colour(astronaut_rgb):
    """BlazeFace was trained on colour photos: given the colour image it is surer of the face than
    given its gray copy."""
    stage = FaceStage(detector="blazeface")
    (in_colour,), (in_gray,) = stage(astronaut_rgb), stage(cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY))
    assert in_colour.score > in_gray.score and same_face(in_colour.box, in_gray.box)
