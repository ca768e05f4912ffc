"""The filter optimiser: what makes it Muon, checked on its own numbers."""

from __future__ import annotations

import torch

from visionnet.training.muon import FilterMuon, orthogonalise


def test_orthogonalise_pushes_singular_values_towards_one() -> None:
    g = torch.Generator().manual_seed(0)
    # Badly conditioned on purpose: singular values spread over three decades.
    u, _ = torch.linalg.qr(torch.randn(64, 64, generator=g))
    v, _ = torch.linalg.qr(torch.randn(288, 64, generator=g))
    matrix = u @ torch.diag(torch.logspace(-3, 0, 64)) @ v.T
    for m in (matrix, matrix.T):  # wide and tall
        out = orthogonalise(m, steps=5)
        assert out.shape == m.shape
        s = torch.linalg.svdvals(out)
        assert s.max() < 1.5 and s.min() > 0.2, s  # cond 1000 -> under 8
        # Same singular directions: the update points where the gradient does.
        assert float((out * m).sum()) > 0


def test_a_step_keeps_each_filter_bank_at_norm_sqrt_out_and_moves_by_lr() -> None:
    g = torch.Generator().manual_seed(1)
    weight = torch.nn.Parameter(torch.randn(32, 16, 3, 3, generator=g) * 5)
    opt = FilterMuon([weight], lr=0.1, momentum=0.0, nesterov=False)
    weight.grad = torch.randn(32, 16, 3, 3, generator=g)
    before = weight.detach().clone()
    opt.step()
    normalised = before * (32**0.5 / before.norm())
    step = weight.detach() - normalised
    # The step is -lr times a near-orthogonal matrix: every singular value near lr.
    s = torch.linalg.svdvals(step.reshape(32, -1))
    assert float(s.min()) > 0.02 and float(s.max()) < 0.15
    assert float((step * weight.grad).sum()) < 0  # downhill
    # Before its step, the weight was scaled to norm sqrt(32): weight decay is not needed.
    assert abs(float(normalised.norm()) - 32**0.5) < 1e-4


def test_parameters_without_gradients_are_left_alone() -> None:
    weight = torch.nn.Parameter(torch.ones(4, 2, 3, 3))
    FilterMuon([weight], lr=1.0).step()
    assert torch.equal(weight.detach(), torch.ones(4, 2, 3, 3))
