"""Model cards: one type reads the three kinds by shape, validates them and writes them stamped."""

from __future__ import annotations

import json

import pytest

from lightfer_utils.runtime import shipped_models
from lightfer_utils.runtime.errors import ModelLoadError
from lightfer_utils.runtime.model_card import SCHEMA_VERSION, ModelCard


def test_every_committed_card_reads_validates_and_knows_its_accuracy():
    kinds = {}
    for name in shipped_models.names():
        card = shipped_models.card(name)
        kinds.setdefault(card.kind, []).append(name)
        assert card.parameters > 0 and card.default_format() in card["files"]
        for split in ("PublicTest", "PrivateTest"):
            assert 0.14 < card.accuracy(split) < 1, (name, split)
    assert {"trained", "edge"} <= set(kinds)
    deep = shipped_models.card("light_fer_net_deep")
    assert deep.accuracy("PrivateTest") == deep["metrics"]["PrivateTest"]["accuracy"]
    assert deep.accuracy("PrivateTest", "tflite_int8") == deep["int8"]["formats"]["tflite_int8"]["PrivateTest_accuracy"]
    edge = shipped_models.card("light_fer_net_deep_edge")
    assert edge.kind == "edge" and edge.accuracy("PublicTest") == edge["formats"][edge["edge_format"]]["PublicTest_accuracy"]


def test_a_written_card_is_stamped_and_read_back_equal(tmp_path):
    card = ModelCard(json.loads((shipped_models.models_dir() / "mini_xception.card.json").read_text()))
    card.write(tmp_path / "m.card.json")
    again = ModelCard.read(tmp_path / "m.card.json")
    assert again == card and again["schema_version"] == SCHEMA_VERSION and again["kind"] == "trained"


@pytest.mark.parametrize("change, message", [
    ({"schema_version": 2}, "schema_version 2 is not 1"),
    ({"kind": "magic"}, "kind 'magic' is not one of trained, edge, paper"),
    ({"metrics": {}}, "needs 'metrics' for PublicTest and PrivateTest"),
    ({"architecture": {}}, "needs 'architecture'"),
    ({"kind": "paper", "formats": None}, "a paper model's card needs 'formats'"),
])
def test_a_card_that_is_not_one_is_refused_naming_why(tmp_path, change, message):
    content = {**json.loads((shipped_models.models_dir() / "mini_xception.card.json").read_text()), **change}
    with pytest.raises(ModelLoadError, match=message):
        ModelCard(content, "m.card.json")
    path = tmp_path / "m.card.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ModelLoadError, match=f"{path}: not a model card"):
        ModelCard.read(path)
