"""``bad_teacher``: unlearning with an incompetent teacher (Chundawat et al., AAAI 2023)."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ._peers import frozen_copy, other_class_argmax, retain_batches
from ._registry import register_method
from .base import MethodContext, Phase, UnlearningMethod, cycle_batches
from .ingredients import register_ingredient


def incompetent_copy(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` with every layer re-initialised (each module's ``reset_parameters``, batch-norm
    statistics included) from ``seed`` on the CPU: the same architecture, randomly initialised. Raises
    :class:`ConfigError` when no layer can be re-initialised."""
    device = next(model.parameters()).device
    bad = copy.deepcopy(model).cpu()
    reset = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in bad.modules():
            fn = getattr(m, "reset_parameters", None)
            if callable(fn):
                fn()
                reset += 1
    if reset == 0:
        raise ConfigError("method 'bad_teacher' needs a model with layers that can be re-initialised "
                          "(modules with reset_parameters); this model has none")
    return frozen_copy(bad.to(device))


@register_ingredient("incompetent_teacher",
                     description="a randomly initialised copy of the model's logits on the forget set")
def incompetent_teacher(ctx: MethodContext) -> torch.Tensor:
    """The logits of a randomly initialised copy of the model (seeded with the run's seed) on the forget set,
    in eval mode: the incompetent teacher's targets (only its forget-set outputs are ever used)."""
    bad = incompetent_copy(ctx.model, ctx.config.seed)
    bs = ctx.config.eval_batch(ctx.device)
    with torch.no_grad():
        out = torch.cat([bad(ctx.x_forget[s:s + bs]) for s in range(0, ctx.x_forget.shape[0], bs)]).float()
    return out


def forget_targets(bad_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The incompetent teacher's logits, with each instance's label logit swapped with its top other logit
    where the teacher's own prediction is the label (so its distribution never predicts the label)."""
    out = bad_logits.clone()
    hit = (out.argmax(1) == labels).nonzero().flatten()
    if len(hit):
        other = other_class_argmax(out[hit], labels[hit])
        top, low = out[hit, labels[hit]].clone(), out[hit, other].clone()
        out[hit, labels[hit]], out[hit, other] = low, top
    return out


@register_method
class BadTeacher(UnlearningMethod):
    """Bad Teacher: the unlearned model (the student, initialised from the original) is distilled from two
    teachers at once: an **incompetent teacher** (the same architecture, randomly initialised) on the forget
    set, the **competent teacher** (the original model, frozen) on the remaining data. Each step descends
    ``KL(teacher || student)`` at temperature 1 over one batch of ``forget_batch_size`` forget instances
    (incompetent teacher's outputs) and ``retain_batch_size`` remaining examples (original's outputs), until
    no forget instance is predicted as its label.

    Chundawat, Tarun, Mandal, Kankanhalli: *Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks
    using an Incompetent Teacher*, AAAI 2023; official code github.com/vikram2000b/bad-teaching-unlearning
    (``unlearn.py: UnlearnerLoss, blindspot_unlearner``). Taken: the loss (per example the incompetent
    teacher's softmax for forget examples, the original's for remaining ones, ``KL_temperature = 1``), forget
    and remaining examples mixed in one batch, the incompetent teacher an untrained instance of the model's
    architecture in eval mode (here a copy with every layer's ``reset_parameters`` called, seeded with the
    run's seed; parameters outside such layers, e.g. a ViT's position embedding, keep their values; its
    forget-set logits are computed once, ingredient ``incompetent_teacher``, the original's on remaining data
    by a frozen copy kept in ``ctx.extras["teacher"]``); the code's optimiser, Adam without weight decay (so
    the config's ``lr``, ``momentum`` and ``weight_decay`` do not apply), with ``bad_teacher_lr = 1e-3``,
    between the notebook's 1e-4 and ``blindspot_unlearner``'s default 1e-2: on 3 requests of 8 digits, Adam
    1e-4 and the config's SGD (1e-3) reached l2ul's stopping criterion on none within 1000 steps, Adam 1e-3
    on all (227 to 262 steps, D_r 0.99). Changed: the KL is averaged over the batch (``batchmean``) where the
    code's ``F.kl_div`` default also divides by the number of classes (a constant factor, irrelevant with
    Adam); the code draws batches of 256 from the forget set plus a 30 % subset of the remaining data, for
    one epoch; here every step has ``forget_batch_size`` forget and ``retain_batch_size`` remaining examples
    (so a few instances are not drowned), until the task holds. Added: where the
    incompetent teacher itself predicts an instance's label, its label logit is swapped with its top other
    logit (otherwise matching it would keep the instance predicted as its label and l2ul's stopping criterion
    could never be met). ``relabel`` is refused: the incompetent teacher has no target to teach."""

    name = "bad_teacher"
    description = "Bad Teacher: distil a random-init teacher on the forget set, the original on remaining data"
    ingredients = ("incompetent_teacher",)
    data = ("retain",)
    data_needs = "remaining training data"
    source = "Chundawat et al., AAAI 2023 (github.com/vikram2000b/bad-teaching-unlearning)"
    tasks = ("misclassify",)
    #: distillation temperature (the code's KL_temperature)
    bad_teacher_temperature = 1.0
    #: Adam learning rate (the code: Adam, 1e-4 in its notebook, 1e-2 as blindspot_unlearner's default)
    bad_teacher_lr = 1e-3

    def setup(self, ctx: MethodContext) -> None:
        ctx.extras["teacher"] = frozen_copy(ctx.model)
        ctx.extras["forget_targets"] = forget_targets(ctx.ingredients["incompetent_teacher"], ctx.y_forget)

    def phases(self, ctx: MethodContext):
        cfg = ctx.config
        forget = cycle_batches(ctx.x_forget.shape[0], cfg.forget_batch_size, ctx.generator)
        retain = retain_batches(ctx)
        teacher, bad = ctx.extras["teacher"], ctx.extras["forget_targets"]
        t = self.bad_teacher_temperature

        def loss(model: nn.Module, c: MethodContext) -> torch.Tensor:
            idx = next(forget).to(c.device)
            xr, _ = next(retain)
            with torch.no_grad():
                target = torch.cat([bad[idx], teacher(xr)])
            out = model(torch.cat([c.x_forget[idx], xr]))
            return F.kl_div(F.log_softmax(out / t, 1), F.log_softmax(target / t, 1), reduction="batchmean",
                            log_target=True)

        lr = self.bad_teacher_lr
        return [Phase("optimization", "forget", cfg.max_steps, lambda params: torch.optim.Adam(params, lr=lr), loss,
                      bn=cfg.bn)]
