"""Paper metadata on the detector registry: citations, adversarial-training marks, COBRA's table numbers."""

from __future__ import annotations

import pytest

from detectors import list_detectors
from detectors.base import DETECTORS, Detector, paper_result
from detectors.papers import PAPER_DATASETS, Citation, PaperResult, cobra_results


def project_detectors() -> dict[str, type[Detector]]:
    """The detectors this project ships (plugins and test toys registered elsewhere left out)."""
    classes = {name: DETECTORS.get(name) for name in list_detectors()}
    return {name: cls for name, cls in classes.items() if cls.__module__.startswith("detectors.")}


def test_every_project_detector_declares_a_citation():
    detectors = project_detectors()
    assert {"cobra", "csi", "deepsvdd", "patchcore", "zarnd"} <= set(detectors)
    for name, cls in detectors.items():
        citation = cls.citation
        assert isinstance(citation, Citation), name
        assert citation.title and citation.venue, name
        assert 2000 <= citation.year <= 2025, name
        assert citation.link.startswith("https://"), name


def test_cobra_citation_and_fmnist_row():
    cobra = DETECTORS.get("cobra")
    assert cobra.citation.title == "Mitigating Spurious Negative Pairs for Robust Industrial Anomaly Detection"
    assert (cobra.citation.venue, cobra.citation.year) == ("ICLR", 2025)
    result = paper_result("cobra", "fmnist")
    assert result is not None
    assert (result.clean, result.robust) == (93.1, 89.6)
    assert (result.attack, result.eps) == ("PGD-1000", "4/255")
    assert "COBRA" in result.source


@pytest.mark.parametrize(
    ("detector", "dataset", "clean", "robust"),
    [
        ("cobra", "mvtec", 89.1, 75.1),
        ("zarnd", "cifar10", 89.7, 56.0),
        ("deepsvdd", "svhn", 60.3, 1.5),
        ("patchcore", "visa", 95.1, 2.7),
        ("transformaly", "mvtec", 88.5, 2.2),
        ("principals", "mnist", 97.8, 83.1),
        ("ocsdf", "cifar100", 50.2, 23.5),
        ("apae", "fmnist", 88.3, 19.5),
        ("csi", "mvtec", 63.8, 4.6),
    ],
)
def test_table_cells(detector, dataset, clean, robust):
    result = paper_result(detector, dataset)
    assert result is not None and (result.clean, result.robust) == (clean, robust)


def test_adversarially_trained_matches_the_papers_marks():
    # COBRA's tables star PrincipaLS, OCSDF, APAE and ZARND; COBRA and its adversarial ablation train adversarially
    # too, and so does our AT-DeepSVDD baseline.
    marked = {name for name, cls in project_detectors().items() if cls.adversarially_trained}
    assert marked == {"principals", "ocsdf", "apae", "zarnd", "cobra", "cobra-noopp", "at-deepsvdd"}


def test_results_use_our_dataset_names_and_the_kind_eps():
    for name, cls in project_detectors().items():
        for dataset, result in cls.paper_results.items():
            assert dataset in PAPER_DATASETS, (name, dataset)
            assert isinstance(result, PaperResult)
            assert result.eps == ("2/255" if dataset in ("mvtec", "visa") else "4/255"), (name, dataset)
            assert 0 <= result.clean <= 100 and (result.robust is None or 0 <= result.robust <= 100)


def test_detectors_outside_the_tables_declare_no_results():
    # MSAD is not knn-pretrained; the ablations have no exact column; DeepSVDD's numbers are not AT-DeepSVDD's.
    for name in ("ae", "knn-pretrained", "at-deepsvdd", "cobra-noadv", "cobra-noopp"):
        assert DETECTORS.get(name).paper_results == {}, name
    assert paper_result("deepsvdd", "mvtec") is None  # COBRA's MVTec table has no DeepSVDD column


def test_unknown_detector_or_dataset_gives_none():
    assert paper_result("no-such-detector", "fmnist") is None
    assert paper_result("cobra", "digits") is None
    assert paper_result("cobra", "no-such-dataset") is None


def test_defaults_for_detectors_that_declare_nothing():
    class Toy(Detector):
        def build(self, input_shape):
            pass

        def fit(self, train, **kwargs):
            return self

        def score(self, x):
            return x.flatten(1).sum(1)

    assert Toy.citation is None and Toy.adversarially_trained is False and Toy.paper_results == {}


def test_cobra_results_rejects_datasets_outside_the_tables():
    with pytest.raises(ValueError, match="digits"):
        cobra_results(digits=(50.0, 10.0))
