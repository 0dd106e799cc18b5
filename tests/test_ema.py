"""The weight average: the closed form of an exponential moving average, BatchNorm statistics included."""

import torch

from unetkit.ema import make_ema, warmed_up_decay


def test_no_average_when_the_decay_is_zero():
    assert make_ema(torch.nn.Linear(2, 2), 0.0) is None


def test_the_average_follows_the_recurrence_for_weights_and_batchnorm_statistics():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    ema = make_ema(model, 0.8)
    expected = None
    for step in range(40):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter))
        model.train()(torch.randn(8, 3))  # moves the BatchNorm running statistics
        ema.update_parameters(model)
        current = {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}
        decay = warmed_up_decay(0.8, step)  # (the first update copies the model)
        expected = current if expected is None else {k: decay * expected[k] + (1 - decay) * current[k] for k in current}
    averaged = ema.module.state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(averaged[name], value)


def test_the_decay_warms_up_so_short_runs_average_recent_weights():
    assert warmed_up_decay(0.999, 0) == 0.1
    assert warmed_up_decay(0.999, 40) < 0.9
    assert warmed_up_decay(0.999, 100_000) == 0.999
