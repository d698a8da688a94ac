"""The ensemble of next-item models, by hand: mean log-softmax, known items, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.nextitem.ensemble import NextItemEnsemble, log_softmax, nextitem_kind


class _Catalog:
    def __init__(self, fingerprint: str = "c1") -> None:
        self._fingerprint = fingerprint

    def fingerprint(self) -> str:
        return self._fingerprint


class _Fixed:
    """A stand-in trained member: fixed scores, a catalogue, a record."""

    def __init__(self, scores, known=None, catalog=None, method="lora") -> None:  # noqa: ANN001
        self.scores = np.array(scores, dtype=np.float32)
        self.known = known
        self.catalog = catalog or _Catalog()
        self.record = {"base_model": "tiny", "method": method}

    def _require_fitted(self):  # noqa: ANN202
        return self.catalog

    def score(self, histories):  # noqa: ANN001, ANN202
        return self.scores[: len(histories)]

    def known_items(self):  # noqa: ANN202
        return self.known


def test_scores_are_the_mean_of_the_members_log_softmax() -> None:
    a = _Fixed([[0.0, 0.0, 0.0, 0.0]])
    b = _Fixed([[np.log(4.0), 0.0, 0.0, 0.0]], method="qlora")
    ensemble = NextItemEnsemble([a, b])
    got = ensemble.score(["user"])
    # a: log(1/4) everywhere; b: log(4/7) for the first item, log(1/7) for the others
    expected = [(np.log(0.25) + np.log(4 / 7)) / 2] + [(np.log(0.25) + np.log(1 / 7)) / 2] * 3
    np.testing.assert_allclose(got[0], expected, rtol=1e-6)
    assert ensemble.record == {"base_model": "tiny", "method": "lora+qlora", "members": 2}
    with pytest.raises(RuntimeError, match="no folders"):
        ensemble.save("x")


def test_log_softmax_is_stable_and_keeps_minus_infinity() -> None:
    got = log_softmax(np.array([[1000.0, 1000.0, -np.inf]]))
    np.testing.assert_allclose(got[0, :2], np.log(0.5), rtol=1e-6)
    assert got[0, 2] == -np.inf


def test_known_items_are_those_every_member_knows() -> None:
    a = _Fixed([[0.0, 0.0, 0.0]], known=np.array([True, True, False]))
    b = _Fixed([[0.0, 0.0, 0.0]], known=np.array([True, False, True]))
    c = _Fixed([[0.0, 0.0, 0.0]])  # scores every item (text)
    np.testing.assert_array_equal(NextItemEnsemble([a, b, c]).known_items(), [True, False, False])
    assert NextItemEnsemble([c]).known_items() is None


def test_members_must_share_the_catalogue_and_exist() -> None:
    with pytest.raises(ValueError, match="at least one"):
        NextItemEnsemble([])
    with pytest.raises(ValueError, match="different catalogues"):
        NextItemEnsemble([_Fixed([[0.0]]), _Fixed([[0.0]], catalog=_Catalog("c2"))])
    with pytest.raises(NotImplementedError, match="llmrec ensemble"):
        NextItemEnsemble([_Fixed([[0.0]])]).fit([], None)


def test_folder_kind(tmp_path) -> None:  # noqa: ANN001
    assert nextitem_kind(tmp_path) is None
    (tmp_path / "model.json").write_text('{"model": "sasrec"}')
    assert nextitem_kind(tmp_path) is None
    (tmp_path / "model.json").write_text('{"model": "nextitem-ensemble"}')
    assert nextitem_kind(tmp_path) == "nextitem-ensemble"
    (tmp_path / "model.json").write_text("not json")
    assert nextitem_kind(tmp_path) is None
