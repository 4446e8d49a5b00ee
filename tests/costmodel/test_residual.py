"""The session correction (``tilewise.costmodel.residual``): a pretrained model times small boosted
trees on its log residuals learns a workload's systematic error and leaves the model unchanged."""
from __future__ import annotations

import numpy as np

from tilewise.core.candidate import Candidate
from tilewise.core.measurement import Measurement
from tilewise.core.record import Record
from tilewise.core.workload import Workload
from tilewise.costmodel import create as create_model
from tilewise.costmodel.residual import ResidualCorrection
from tilewise.tuner.space import SpaceOptions, space_for


def test_correction_learns_a_systematic_error_of_the_model(target):
    w = Workload.parse("matmul:128x128x256:f32")
    space = space_for(w, target, SpaceOptions(2, ()))
    rng = np.random.default_rng(0)
    schedules = list({space.sample(rng): None for _ in range(48)})
    model = create_model("roofline")
    cands = [Candidate(w, s) for s in schedules]
    base = model.predict(cands, target)
    # what the model misses: unpacked B panels are 3x slower
    truth = base * np.array([1.0 if s["promote"] else 3.0 for s in schedules])
    correction = ResidualCorrection(model)
    assert not correction.fitted
    correction.fit([Record(w, target, s, Measurement("ok", "", (t,) * 3, 1e-7, 0.1))
                    for s, t in zip(schedules, truth)], target)
    assert correction.fitted
    mean, std = correction.predict_with_uncertainty(cands, target)
    assert np.mean(np.abs(np.log(mean / truth))) < 0.25 * np.mean(np.abs(np.log(base / truth)))
    assert np.array_equal(std, model.predict_with_uncertainty(cands, target)[1])
    assert np.allclose(model.predict(cands, target), base)
