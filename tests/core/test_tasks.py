"""Cross-Task Synergy batches: clean conditioning streams at t = 0, unbiased task weighting, and a
training step on the tiny model that lowers the loss."""

from __future__ import annotations

import torch

from harmony_core.training.tasks import TaskMix, flow_loss, sample_task_batch
from tests._helpers import make_conditions, make_latents, make_tiny_model


def test_a2v_feeds_clean_audio_at_zero_and_scores_only_video():
    v, a = make_latents(__import__("harmony_core.config", fromlist=["x"]).get_preset("tiny"), batch=3)
    batch = sample_task_batch(
        v, a, TaskMix(), generator=torch.Generator().manual_seed(0), tasks=torch.tensor([0, 1, 2])
    )
    assert batch.a_t[1] == 0 and torch.equal(batch.a_xt[1], a[1]) and batch.a_weight[1] == 0
    assert batch.v_t[2] == 0 and torch.equal(batch.v_xt[2], v[2]) and batch.v_weight[2] == 0
    assert batch.v_t[0] == batch.a_t[0] > 0  # joint: one shared sigma
    # x_t = (1 - s) x0 + s eps and target = eps - x0  =>  x_t - s * target = x0
    s = batch.v_t[0]
    torch.testing.assert_close(batch.v_xt[0] - s * batch.v_target[0], v[0], rtol=1e-5, atol=1e-5)


def test_task_weights_are_an_unbiased_estimate_of_the_papers_sum():
    mix = TaskMix(probs=(0.5, 0.25, 0.25))
    # E[w] per task = p * lambda / p = lambda: 1, 0.1, 0.3
    expected = [mix.probs[k] * mix.sample_weight(k) / sum(mix.probs) for k in range(3)]
    assert [round(e, 9) for e in expected] == [1.0, 0.1, 0.3]


def test_task_sampling_follows_the_probabilities():
    mix = TaskMix(probs=(0.6, 0.1, 0.3))
    v, a = torch.zeros(4000, 1, 1, 1, 1), torch.zeros(4000, 1, 1)
    batch = sample_task_batch(v, a, mix, generator=torch.Generator().manual_seed(1))
    freq = torch.bincount(batch.tasks, minlength=3).float() / 4000
    assert torch.allclose(freq, torch.tensor([0.6, 0.1, 0.3]), atol=0.03)


def test_training_steps_on_the_tiny_model_lower_the_loss(tiny_config):
    model = make_tiny_model(tiny_config).train()
    v, a = make_latents(tiny_config, batch=2, frames=3)
    cond = make_conditions(tiny_config, batch=2)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    mix = TaskMix()

    def loss_at(seed):
        batch = sample_task_batch(v, a, mix, generator=torch.Generator().manual_seed(seed))
        pv, pa = model(batch.v_xt, batch.a_xt, batch.v_t, batch.a_t, cond)
        return (batch.v_weight * flow_loss(pv, batch.v_target) + batch.a_weight * flow_loss(pa, batch.a_target)).mean()

    with torch.no_grad():
        before = sum(float(loss_at(1000 + k)) for k in range(4))
    for step in range(24):  # fit the same four noise draws the loss is measured on
        opt.zero_grad()
        loss_at(1000 + step % 4).backward()
        opt.step()
    with torch.no_grad():
        after = sum(float(loss_at(1000 + k)) for k in range(4))
    assert after < 0.8 * before


def test_motion_weights_emphasise_what_moves_and_keep_the_loss_scale():
    from harmony_core.training.tasks import motion_weights

    v = torch.zeros(2, 4, 5, 3, 3)
    v[0, :, 2:, 1, 1] = 1.0  # clip 0: one position changes between latent frames 1 and 2
    w = motion_weights(v, 4.0)
    assert w.shape == (2, 1, 5, 3, 3)
    torch.testing.assert_close(w.flatten(1).mean(1), torch.ones(2))  # mean 1 per clip
    assert w[0, 0, 2, 1, 1] > 4 * w[0, 0, 2, 0, 0]  # the moving position weighs more
    torch.testing.assert_close(w[1], torch.ones_like(w[1]))  # a static clip: plain MSE
    assert motion_weights(v, 0.0) is None
    # weighted flow loss: an error where the clip moves costs more than the same error where it does not
    target = torch.zeros_like(v)
    err_moving, err_still = target.clone(), target.clone()
    err_moving[0, :, 2, 1, 1] = 1.0
    err_still[0, :, 2, 0, 0] = 1.0
    assert flow_loss(err_moving, target, w)[0] > 4 * flow_loss(err_still, target, w)[0]
    torch.testing.assert_close(flow_loss(err_moving, target), flow_loss(err_still, target))


def test_motion_weight_is_validated_and_stored():
    import pytest

    from harmony_core.training.config import TrainConfig

    assert TrainConfig().motion_weight == 0.0
    with pytest.raises(ValueError, match="motion_weight"):
        TrainConfig(motion_weight=-1.0)
