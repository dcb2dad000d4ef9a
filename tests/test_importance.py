import torch
from torch import nn

from l2ul.importance import anchor_penalty, mas_importance, normalize_importance


def _hand_mas(W1, b1, W2, b2, xs):
    """Per-sample |d ||W2 (W1 x + b1) + b2||_2 / d theta|, averaged: closed form for a linear net."""
    acc = {"0.weight": 0, "0.bias": 0, "1.weight": 0, "1.bias": 0}
    for x in xs:
        h = W1 @ x + b1
        o = W2 @ h + b2
        u = o / o.norm()
        v = W2.T @ u
        acc["1.weight"] = acc["1.weight"] + torch.outer(u, h).abs()
        acc["1.bias"] = acc["1.bias"] + u.abs()
        acc["0.weight"] = acc["0.weight"] + torch.outer(v, x).abs()
        acc["0.bias"] = acc["0.bias"] + v.abs()
    return {k: v / len(xs) for k, v in acc.items()}


def test_mas_matches_hand_computation_on_two_layer_linear_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)).double()
    xs = torch.randn(5, 4, dtype=torch.float64)
    model = nn.Sequential(nn.Flatten(), net)   # takes [k, C, H, W]
    got = mas_importance(model, xs.view(5, 1, 2, 2))
    want = _hand_mas(net[0].weight.detach(), net[0].bias.detach(), net[1].weight.detach(),
                     net[1].bias.detach(), xs)
    assert set(got) == {"1." + k for k in want}
    for k, v in want.items():
        torch.testing.assert_close(got["1." + k], v)
    # per-sample absolute values, not |gradient of the mean|: differs on this data
    model.zero_grad()
    out = model(xs.view(5, 1, 2, 2)).norm(dim=1).mean()
    out.backward()
    assert not torch.allclose(net[0].weight.grad.abs(), want["0.weight"])


def test_normalize_importance_minmax_inverted_and_constant_safe():
    raw = {"a": torch.tensor([0.0, 1.0, 3.0, 4.0]), "b": torch.tensor([2.5]), "c": torch.zeros(3)}
    w = normalize_importance(raw)
    torch.testing.assert_close(w["a"], torch.tensor([1.0, 0.75, 0.25, 0.0]))
    assert torch.equal(w["b"], torch.ones(1)) and torch.equal(w["c"], torch.ones(3))
    assert all(torch.isfinite(t).all() for t in w.values())


def test_anchor_penalty_hand_value():
    lin = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0]]))
    anchor = {"weight": torch.tensor([[0.0, 0.0]])}
    weights = {"weight": torch.tensor([[1.0, 0.5]])}
    # (1*1^2 + 0.5*2^2) / 2 = 1.5
    assert anchor_penalty(lin, weights, anchor).item() == 1.5


def test_mas_leaves_gradients_and_mode_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    model.train()
    mas_importance(model, torch.rand(3, 1, 2, 2))
    assert model.training
    assert all(p.grad is None for p in model.parameters())
