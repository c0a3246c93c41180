"""CSI: shares COBRA's score machinery; after a short fit, obvious anomalies score higher than normals."""

from __future__ import annotations

import torch

from bench.data import load_split
from detectors import create_detector
from detectors.csi import shift_weights


def test_csi_learns_digits_and_flags_obvious_anomalies():
    split = load_split("digits", 0, max_test=60)
    det = create_detector("csi", epochs=6, batch_size=32, width=8, blocks=[1, 1, 1, 1], score_samples=2, max_train=64)
    det.fit(split.train, generator=torch.Generator().manual_seed(0))
    normals = split.test[~split.test_is_anomaly]
    held_out = det.score(normals)
    noise = det.score(torch.rand(normals.shape, generator=torch.Generator().manual_seed(1)))
    inverted = det.score(1 - normals)
    assert held_out.shape == (normals.shape[0],) and torch.isfinite(held_out).all()
    assert (det.weight_shi >= 0).all()  # a shift term never turns into a normality penalty
    assert inverted.median() > held_out.median() or noise.median() > held_out.median()
    assert det.shift.num_shifts == 4 and det.passes_per_score == 8


def test_shift_weights_invert_positive_means_and_drop_the_rest():
    weights = shift_weights(torch.tensor([2.0, 0.5, 0.0, -3.0]))
    assert torch.equal(weights, torch.tensor([0.5, 2.0, 0.0, 0.0]))
