"""The closed-form forget step of ``repair --forget-phase head_edit``: the smallest change of the classifier head
(the final linear layer) that puts every forget instance a margin past its target class.

For a model whose logits are ``z = W f(x) + b`` (``f`` the features the final linear layer reads), the edit
``(dW, db)`` solves

    minimise   mean over the proxy images of ||dW f(x) + db||^2  +  ridge * ||(dW, db)||^2
    subject to z'_t(x_j) - z'_y(x_j) >= margin  for every forget instance j (y its label, t its fixed target),

i.e. the least mean squared change of the proxy's logits, measured on the unlabeled proxy images the repair
distils on. With the equality constraints of the active instances (those not yet ``margin`` past ``t``) the
solution is closed-form: writing ``g_j = [f(x_j), 1]``, ``d_j = e_t - e_y`` and ``C`` the proxy's second-moment
matrix of ``[f, 1]`` plus the ridge, ``[dW, db] = sum_j a_j d_j (C^-1 g_j)^T`` where ``a`` solves the k x k
system ``G a = m``, ``G_ij = (d_i . d_j) (g_i^T C^-1 g_j)``, ``m_j`` = how far instance j is from its margin. An
instance that the edit of the others pushes back over its margin joins the active set, for a few rounds.
This is the minimum-change linear edit of model-editing work (ROME, Meng et al., NeurIPS 2022, "Locating and
Editing Factual Associations in GPT": a rank-one update whose key covariance is estimated on other inputs),
applied to an image classifier's head with the repair's proxy images as the other inputs; written here because
no maintained library exposes it for a classifier head. Batch norm and every other layer are untouched, so
the forgetting lives in the weights and holds with the original running statistics.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import nn

from .errors import ConfigError


@dataclass
class HeadEdit:
    """What an edit did: ``active`` instances constrained (of ``k``), ``rounds`` of the active-set loop,
    ``unmet``: instances still within ``margin`` of their boundary after it (0 when the edit reached the task
    with its margin), ``rms_change``: the root mean squared change of the proxy's logits."""

    k: int
    active: int
    rounds: int
    unmet: int
    rms_change: float


def classifier_head(model: nn.Module, probe: torch.Tensor) -> nn.Linear:
    """The model's final linear layer: the last ``nn.Linear`` module, checked on ``probe`` (a few images) to
    produce the model's logits itself (nothing after it). Raises :class:`ConfigError` when there is none."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("forget_phase 'head_edit' needs a model whose logits are a final nn.Linear layer's "
                          "output; this model has no nn.Linear", field="forget_phase")
    head = linears[-1]
    seen = {}
    hook = head.register_forward_hook(lambda m, i, o: seen.__setitem__("out", o))
    try:
        with torch.no_grad():
            from .evaluation import _logits_of

            logits = _logits_of(model(probe))        # (a model may return an output object, as Hugging Face's)
    finally:
        hook.remove()
    if "out" not in seen or seen["out"].shape != logits.shape or not torch.equal(seen["out"], logits):
        raise ConfigError("forget_phase 'head_edit' needs a model whose logits are its last nn.Linear layer's "
                          "output (found a layer after it); use --forget-phase sgd", field="forget_phase")
    return head


def head_features(model: nn.Module, head: nn.Linear, data, batch_size: int, device: torch.device) -> torch.Tensor:
    """The inputs of ``head`` on ``data`` (an image tensor, or any data :func:`l2ul.evaluation.as_loader`
    takes), in batches of ``batch_size`` in eval mode without gradients: float64 (exact copies of the float32
    inputs), on the CPU."""
    from .evaluation import as_loader

    if isinstance(data, torch.Tensor):
        data = (data, torch.zeros(data.shape[0], dtype=torch.long))
    out = []
    hook = head.register_forward_hook(lambda m, i, o: out.append(i[0].detach().reshape(i[0].shape[0], -1)))
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in as_loader(data, batch_size):
                model(batch[0].to(device))
    finally:
        hook.remove()
        model.train(was)
    return torch.cat(out).double().cpu()


def head_logits(head: nn.Linear, features: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``head`` applied to ``features`` (from :func:`head_features`) in batches of ``batch_size``: the logits
    of a model whose other layers are those the features were read from."""
    w = head.weight.detach()
    b = None if head.bias is None else head.bias.detach()
    with torch.inference_mode():
        return torch.cat([torch.nn.functional.linear(features[s:s + batch_size].to(w.device, w.dtype), w, b).cpu()
                          for s in range(0, features.shape[0], batch_size)])


def head_only_change(original: nn.Module, edited: nn.Module, probe: torch.Tensor) -> Optional[str]:
    """The name of the final linear layer if it is all that differs between the two models' states (and it
    produces the edited model's logits, checked on ``probe``), else ``None``: then the edited model's outputs
    are its head applied to the original's features (:func:`head_logits`), with no forward pass."""
    a, b = original.state_dict(), edited.state_dict()
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        return None
    changed = {k.rsplit(".", 1)[0] for k in a if not torch.equal(a[k].cpu(), b[k].cpu())}
    if len(changed) != 1:
        return None
    name = changed.pop()
    try:
        head = classifier_head(edited, probe)
    except ConfigError:
        return None
    return name if dict(edited.named_modules()).get(name) is head else None


def _augmented(features: torch.Tensor, bias: bool) -> torch.Tensor:
    return torch.cat([features, torch.ones(features.shape[0], 1, dtype=features.dtype)], 1) if bias else features


def solve_head_edit(weight: torch.Tensor, bias: Optional[torch.Tensor], proxy_features: torch.Tensor,
                    forget_features: torch.Tensor, away: torch.Tensor, toward: torch.Tensor, *, margin: float,
                    ridge: float, rounds: int = 5) -> Tuple[torch.Tensor, Optional[torch.Tensor], HeadEdit]:
    """``(dW, db, info)``: the minimum-change edit of the module docstring, for the head ``(weight, bias)``
    (``bias`` None when the layer has none). ``away``/``toward``: per forget instance, the class whose logit
    must end ``margin`` below the other's. ``ridge``: relative to the mean diagonal of the proxy's
    second-moment matrix."""
    has_bias = bias is not None
    w = torch.cat([weight.double(), bias.double()[:, None]], 1) if has_bias else weight.double()
    xp, xf = _augmented(proxy_features, has_bias), _augmented(forget_features, has_bias)
    c = xp.T @ xp / xp.shape[0]
    c = c + ridge * c.diagonal().mean() * torch.eye(c.shape[0], dtype=c.dtype)
    ci_xf = torch.linalg.solve(c, xf.T).T                           # rows: C^-1 g_j
    k, n_classes = xf.shape[0], w.shape[0]
    d = torch.zeros(k, n_classes, dtype=w.dtype)
    d[torch.arange(k), toward] += 1.0
    d[torch.arange(k), away] -= 1.0
    gram = (d @ d.T) * (xf @ ci_xf.T)
    gap = (xf @ w.T * d).sum(1)                                     # z_toward - z_away now
    active = gap < margin
    delta = torch.zeros_like(w)
    done_rounds = 0
    for _ in range(rounds):
        done_rounds += 1
        idx = active.nonzero().flatten()
        if len(idx) == 0:
            break
        g = gram[idx][:, idx]
        g = g + 1e-9 * g.diagonal().mean() * torch.eye(len(idx), dtype=g.dtype)
        a = torch.linalg.lstsq(g, margin - gap[idx, None]).solution.flatten()
        delta = (d[idx] * a[:, None]).T @ ci_xf[idx]
        new_gap = gap + (xf @ delta.T * d).sum(1)
        short = new_gap < margin - 1e-6
        if not bool((short & ~active).any()):
            break
        active = active | short
    new_gap = gap + (xf @ delta.T * d).sum(1)
    rms = float((xp @ delta.T).pow(2).mean().sqrt())
    info = HeadEdit(k=k, active=int(active.sum()), rounds=done_rounds,
                    unmet=int((new_gap < margin - 1e-6).sum()), rms_change=rms)
    d_w = delta[:, :weight.shape[1]].to(weight.dtype)
    d_b = delta[:, -1].to(bias.dtype) if has_bias else None
    return d_w, d_b, info
