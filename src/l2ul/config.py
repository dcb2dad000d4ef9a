"""Unlearning configuration and the paper's presets.

Defaults are the paper's CIFAR-10 recipe as run by the authors' scripts (``run_unlearn_cifar_imagenet.sh``):
SGD lr 1e-3, momentum 0.9, weight decay 1e-4; targeted L2 PGD with eps 4.0, step 0.1, 100 iterations and
20 adversarial examples per forget instance; MAS regulariser weight 1; adversarial batch 256, forget batch 32.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, List, Optional, Tuple

from .errors import ConfigError

BN_MODES = ("freeze", "train")
FORGET_LOSSES = ("ascent", "nearest")
TASKS = ("misclassify", "relabel", "unseen")
#: config groups that only some methods read (a method names those it reads in ``config_groups``): results
#: stores leave them out of their settings hash when none of their methods reads them
METHOD_GROUPS = ("repair",)


#: predictions' batch size on the CPU when ``eval_batch_size`` is not set: measured on the CIFAR ResNet-20/32
#: and a 224-px ResNet-18 (one and two threads), 64 runs 2.5-4x faster per image than 1024 and gives the
#: same logits bit for bit (BENCHMARKS.md section 6); larger batches overflow the CPU's caches
CPU_EVAL_BATCH = 64
#: and on an accelerator (cuda, mps), where large batches fill the device (the default before 0.4)
ACCELERATOR_EVAL_BATCH = 1024
#: the repair phase's automatic step budget (``repair_steps=None``), and the doubled budget of requests of
#: ``LARGE_REQUEST`` or more instances (:meth:`UnlearnConfig.repair_budget`)
REPAIR_STEPS, LARGE_REQUEST_REPAIR_STEPS, LARGE_REQUEST = 300, 600, 100


def default_eval_batch(device: Any = None) -> int:
    """The batch size of predictions on ``device`` (a ``torch.device``, a name, or ``None``: the CPU) when none
    is given: :data:`CPU_EVAL_BATCH` on the CPU, :data:`ACCELERATOR_EVAL_BATCH` elsewhere."""
    kind = getattr(device, "type", None) or str(device or "cpu").split(":")[0]
    return CPU_EVAL_BATCH if kind == "cpu" else ACCELERATOR_EVAL_BATCH


def _field(default: Any, group: str, help: str, *, minimum: Optional[float] = None, exclusive: bool = False,
           maximum: Optional[float] = None, choices: Optional[Tuple[str, ...]] = None, kind: Optional[type] = None, nullable: bool = False,
           flag: bool = True, since: str = "0.1", check: Optional[Callable[[Any], None]] = None,
           invalid: Tuple[Any, ...] = (), hash_omit: Any = dataclasses.MISSING,
           tasks: Optional[Tuple[str, ...]] = None) -> Any:
    """A config field with its single source of truth: ``help`` (CLI help and docs), ``group`` (CLI option
    group), ``choices`` or a lower bound ``minimum`` (``exclusive``: strictly greater), ``nullable`` (``None``
    allowed), ``flag`` (whether commands expose it as ``--<name>``) and ``since`` (the release that added
    it: results stores hash a field added after 0.2 only when it differs from ``hash_omit``, by default its
    default, so folders written before it existed keep resuming; a field whose default changed keeps its
    old default as ``hash_omit``, so folders of the old default are never resumed with the new), ``tasks`` (the
    tasks that read it, when not all: results stores of other tasks leave it out of their hash), ``check`` (a further test of a value of the right kind, raising
    :class:`ConfigError`) and ``invalid`` (values ``check`` refuses, for the tests). Validation, the CLI flags
    of every command and the invalid-value tests are generated from it."""
    meta = {"group": group, "help": help, "minimum": minimum, "exclusive": exclusive, "maximum": maximum,
            "choices": choices,
            "kind": kind or type(default), "nullable": nullable, "flag": flag, "since": since, "check": check,
            "invalid": tuple(invalid),
            "hash_omit": default if hash_omit is dataclasses.MISSING else hash_omit, "tasks": tasks}
    return field(default=default, metadata=meta)


def check_value(f: dataclasses.Field, v: Any) -> None:
    """Raise :class:`ConfigError` unless ``v`` satisfies field ``f``'s declared constraints."""
    m = f.metadata
    if v is None and m["nullable"]:
        return
    kind = m["kind"]
    if kind is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        what = "a finite number"
    elif kind is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
        what = "an integer"
    else:
        ok = isinstance(v, kind)
        what = f"a {kind.__name__}"
    if m["choices"] is not None:
        if v not in m["choices"]:
            raise ConfigError(f"{f.name} must be one of {m['choices']}, got {v!r}", field=f.name)
        return
    if not ok:
        raise ConfigError(f"{f.name} must be {what}, got {v!r}", field=f.name)
    if m.get("check") is not None:
        m["check"](v)
    lo = m["minimum"]
    if lo is not None and (v <= lo if m["exclusive"] else v < lo):
        if m["exclusive"] and lo == 0:
            raise ConfigError(f"{f.name} must be a positive number, got {v!r}", field=f.name)
        raise ConfigError(f"{f.name} must be {'>' if m['exclusive'] else '>='} {lo:g}, got {v!r}", field=f.name)
    hi = m["maximum"]
    if hi is not None and v > hi:
        raise ConfigError(f"{f.name} must be <= {hi:g}, got {v!r}", field=f.name)


#: The device types l2ul runs on (``cuda`` with an optional index).
DEVICE_TYPES = ("cpu", "cuda", "mps")


def check_device(device: Any) -> None:
    """Raise :class:`ConfigError` (field ``device``) unless ``device`` is ``None`` (automatic) or names a
    device l2ul runs on: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``. Whether it is *available* on this machine
    is checked where the run starts (:func:`l2ul.resolve_device`)."""
    if device is None:
        return
    import torch

    if not isinstance(device, (str, torch.device)):
        raise ConfigError(f"device must be a string such as 'cpu' or 'cuda:0', got {device!r}", field="device")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"device {str(device)!r} is not a device name; use cpu, cuda, cuda:N or mps",
                          field="device") from None
    if dev.type == "meta":
        raise ConfigError("device 'meta' holds no data (it only records shapes), so nothing can run on it; use "
                          "cpu, cuda, cuda:N or mps", field="device")
    if dev.type not in DEVICE_TYPES:
        raise ConfigError(f"device {str(device)!r} ({dev.type}) is not supported; use cpu, cuda, cuda:N or mps",
                          field="device")


def config_fields() -> Tuple[dataclasses.Field, ...]:
    """The fields of :class:`UnlearnConfig` with their metadata (see :func:`_field`)."""
    return fields(UnlearnConfig)


def invalid_values(f: dataclasses.Field) -> List[Any]:
    """Values field ``f`` must refuse, derived from its constraints (for the common tests)."""
    m = f.metadata
    bad: List[Any] = ["not-a-value" if m["choices"] is not None else object()]
    if not m["nullable"]:
        bad.append(None)
    bad += list(m.get("invalid", ()))
    if m["choices"] is not None:
        return bad + [m["choices"][0].upper() + "x"]
    if m["kind"] in (int, float):
        bad += [True, float("nan")] if m["kind"] is float else [True, 1.5]
        if m["minimum"] is not None:
            lo = m["minimum"]
            bad.append(lo if m["exclusive"] else (lo - 1 if m["kind"] is int else lo - 0.5))
        if m["maximum"] is not None:
            bad.append(int(m["maximum"]) + 1 if m["kind"] is int else m["maximum"] * 2)
    return bad


@dataclass
class UnlearnConfig:
    """Every hyperparameter of an unlearning run.

    Optimisation
        lr, momentum, weight_decay: SGD settings (fresh optimiser per request, no schedule).
        max_steps: step budget; the run stops earlier as soon as the task is done (checked after every step).
    Adversarial examples (``adv`` and ``l2ul``)
        pgd_eps: L2 radius of the perturbation in [0, 1] pixel space.
        pgd_alpha: L2 length of each (gradient-normalised) PGD step.
        pgd_steps: PGD iterations.
        adv_per_instance: adversarial examples per forget instance, each toward its own random wrong label.
        pgd_batch_size: images attacked at once (generation only; does not change the result).
    Weight importance (``l2ul``)
        reg_lambda: weight of the MAS anchor ``sum Omega * (theta - theta0)^2 / 2``.
    Batches
        adv_batch_size: adversarial examples per step; forget_batch_size: forget instances per step;
        retain_batch_size: remaining-data examples per step (``oracle`` only).
    Batch norm
        bn: ``"train"`` (default, the original code's behaviour) runs BatchNorm in train mode during the
        optimisation steps: batch statistics in the forward pass, running statistics updated.
        ``"freeze"`` keeps it in eval mode (running statistics, never updated). Measured on the real
        CIFAR-10 ResNet-20 (k = 16, the paper's recipe), ``freeze`` makes gradient ascent explode
        (non-finite outputs after 9 to 40 steps for neggrad, adv and l2ul): without batch statistics
        nothing stops the ascent from scaling every conv layer's weights, and the scales compound through
        depth. ``freeze`` suits models without BatchNorm behaviour to preserve, or small nets.
        Importance and the stopping check always run in eval mode, as the model is used in deployment.
    Forget term (``misclassify`` task; ``relabel`` always descends cross-entropy toward the targets)
        forget_loss: ``"ascent"`` (default, the paper): gradient *ascent* on the cross-entropy of each
        forget instance's label. ``"nearest"``: gradient *descent* on the cross-entropy toward each
        instance's nearest wrong class (the highest-scoring other class in the current forward pass), the
        boundary-crossing target of Boundary Shrink (Chen et al., CVPR 2023). It is bounded below, so it
        does not explode with ``bn="freeze"``, and its gradient does not vanish on confidently classified
        instances. Measured on the CIFAR-10 ResNet-20 with ``bn="freeze"`` (BENCHMARKS.md, section 4):
        it keeps far more accuracy than the paper's recipe at k = 1, where train-mode batch norm forgets
        by corrupting its running statistics, and needs about 15 times fewer steps at k = 16. In continual
        requests it collapsed at the second request (section 4b): use it for single requests.
    Other
        seed: seeds target labels, PGD random starts, batch order; the same seed gives the same result on
        the same machine.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``None`` for automatic (cuda > mps > cpu).
        eval_batch_size: batch size for the stopping check and predictions; ``None`` (the default since 0.4)
            chooses by device (:meth:`UnlearnConfig.eval_batch`): 64 on the CPU, where small batches stay in
            the caches and run 2.5-4x faster per image than 1024 with the same logits bit for bit
            (BENCHMARKS.md section 6), 1024 on an accelerator.
    """

    lr: float = _field(1e-3, "optimisation", "SGD learning rate", minimum=0, exclusive=True)
    momentum: float = _field(0.9, "optimisation", "SGD momentum", minimum=0)
    weight_decay: float = _field(1e-4, "optimisation", "SGD weight decay", minimum=0)
    max_steps: int = _field(1000, "optimisation", "step budget of the forgetting phase", minimum=1)

    pgd_eps: float = _field(4.0, "adversarial examples",
                            "L2 radius of adversarial perturbations (pixels in [0, 1])", minimum=0, exclusive=True)
    pgd_alpha: float = _field(0.1, "adversarial examples", "L2 length of each PGD step", minimum=0, exclusive=True)
    pgd_steps: int = _field(100, "adversarial examples", "PGD iterations", minimum=0)
    adv_per_instance: int = _field(20, "adversarial examples", "adversarial examples per forget instance",
                                   minimum=1)
    pgd_batch_size: int = _field(512, "adversarial examples", "images attacked at once (speed only)", minimum=1)
    pgd_stop_margin: Optional[float] = _field(None, "adversarial examples",
                                              "stop an example's PGD once its target logit leads every other by "
                                              "this margin (faster; default: all pgd_steps iterations, as the "
                                              "paper)", kind=float, nullable=True, minimum=0, since="0.4")

    reg_lambda: float = _field(1.0, "weight importance", "weight of the MAS anchor", minimum=0)

    adv_batch_size: int = _field(256, "batches", "adversarial examples per step", minimum=1)
    forget_batch_size: int = _field(32, "batches", "forget instances per step", minimum=1)
    retain_batch_size: int = _field(256, "batches", "remaining-data examples per step (oracle)", minimum=1)

    bn: str = _field("train", "batch norm",
                     "batch norm during unlearning: train (the original code) or freeze (running statistics "
                     "fixed)", choices=BN_MODES)
    forget_loss: str = _field("ascent", "forget term",
                              "misclassify task: ascent on the label's cross-entropy (the paper) or descent "
                              "toward the nearest wrong class (pair with bn=freeze; BENCHMARKS.md)",
                              choices=FORGET_LOSSES)
    seed: int = _field(0, "other", "seed of targets, PGD starts and batch order", minimum=0,
                    maximum=2**63 - 1, flag=False)
    device: Optional[str] = _field(None, "other", "cpu, cuda, cuda:N or mps (default: automatic)", kind=str,
                                   nullable=True, check=check_device, invalid=("gpu0", "meta", "cuda:x", "xla"))
    eval_batch_size: Optional[int] = _field(None, "other", "batch size of the stopping check and predictions "
                                            "(automatic: 64 on the CPU, 1024 on an accelerator)", kind=int,
                                            nullable=True, minimum=1)

    repair_steps: Optional[int] = _field(None, "repair", "step budget of the repair phase (method repair); "
                                         f"automatic: {REPAIR_STEPS}, or {LARGE_REQUEST_REPAIR_STEPS} for a request "
                                         f"of {LARGE_REQUEST} or more instances (BENCHMARKS.md 5a'', 5b'')",
                                         kind=int, nullable=True, minimum=0, since="0.3", hash_omit=REPAIR_STEPS)
    repair_lr: float = _field(1e-4, "repair", "learning rate of the repair phase (its start, with the cosine "
                              "schedule)", minimum=0, exclusive=True, since="0.3", hash_omit=1e-3)
    proxy_batch_size: int = _field(128, "repair", "proxy images distilled per repair step", minimum=1, since="0.3")
    hinge_margin: float = _field(1.0, "repair", "logit margin the forget set keeps past its boundary", minimum=0,
                                 since="0.3")
    hinge_weight: float = _field(10.0, "repair", "weight of the forget-set margin constraint", minimum=0,
                                 since="0.3")
    repair_check_every: int = _field(25, "repair", "steps between checks of the stopping criterion", minimum=1,
                                     since="0.3")
    repair_tol: float = _field(0.02, "repair", "stop when the KL from the original on held-out proxy images "
                               "improved by less than this fraction at two successive checks", since="0.3")
    repair_stop_kl: float = _field(0.005, "repair", "also stop the repair at a check where the KL from the "
                                   "original on the held-out proxy images is at most this (nats; 0: only the "
                                   "plateau rule and the budget, before 0.4)", minimum=0, since="0.4",
                                   hash_omit=0.0)
    proxy_holdout: int = _field(512, "repair", "proxy images held out for the stopping criterion (at most 1/5)",
                                minimum=0, since="0.3")
    synth_images: int = _field(1024, "repair", "data-free: images synthesised from the model's BN statistics",
                               minimum=1, since="0.3")
    synth_steps: int = _field(400, "repair", "data-free: optimisation steps per synthesised batch (400 since "
                              "0.4, with the cosine synth_schedule: BENCHMARKS.md 5b/5d; 0.3: 200)", minimum=1,
                              since="0.3", hash_omit=200)
    synth_schedule: str = _field("cosine", "repair", "data-free: learning-rate schedule of the synthesis's Adam "
                                 "steps on the pixels: cosine (decays to 0 over synth_steps, as the DeepInversion "
                                 "reference code does; the default since 0.4) or constant (lr 0.1 throughout, 0.3's)",
                                 choices=("constant", "cosine"), since="0.4", hash_omit="constant")
    repair_optimizer: str = _field("adam", "repair", "optimiser of the repair phase: adam (the default since 0.4, "
                                   "measured better data-free: BENCHMARKS.md 5b) or sgd (momentum and weight "
                                   "decay of the config; 0.3's default, with repair_lr 1e-3)",
                                   choices=("sgd", "adam"), since="0.3", hash_omit="sgd")
    repair_schedule: str = _field("cosine", "repair", "learning-rate schedule of the repair phase: cosine (decays "
                                  "to 0 over repair_steps) or constant (0.3's behaviour)",
                                  choices=("cosine", "constant"), since="0.4", hash_omit="constant")
    repair_logit_weight: float = _field(1.0, "repair", "tasks misclassify and relabel: weight of the mean squared "
                                        "difference of centred logits from the original's, beside the KL, in the "
                                        "repair (keeps the confidence scale a KL at temperature 1 ignores; 0: "
                                        "the KL alone, before 0.4; task unseen: unseen_logit_weight)", minimum=0,
                                        since="0.4", hash_omit=0.0, tasks=("misclassify", "relabel"))
    relabel_forget_kd: float = _field(3.0, "repair", "task relabel, method repair: weight of the "
                                      "distillation on proxy images during the forget phase too (3 since 0.4.0, "
                                      "measured better than 1 with and without proxy data: BENCHMARKS.md 5a'; "
                                      "0: the forget phase descends toward the targets alone, 0.3's behaviour)", minimum=0,
                                      since="0.4", hash_omit=0.0, tasks=("relabel",))
    forget_kd: float = _field(0.0, "repair", "task misclassify, method repair: weight of the distillation on "
                              "proxy images during the forget phase too, beside the cross-entropy toward the "
                              "fixed nearest-class targets (0: the targets alone, the default)", minimum=0,
                              since="0.4", hash_omit=0.0, tasks=("misclassify",))
    forget_phase: str = _field("sgd", "repair", "task misclassify, method repair: how phase 1 reaches the task: "
                               "'sgd' (steps of cross-entropy toward the fixed nearest-class targets) or "
                               "'head_edit' (the closed-form least change of the final linear layer's outputs on "
                               "the proxy that puts every instance hinge_margin past its target, l2ul.head_edit; "
                               "then sgd steps only if it fell short)", choices=("sgd", "head_edit"),
                               since="0.4", tasks=("misclassify",))
    head_edit_ridge: float = _field(0.01, "repair", "forget_phase head_edit: ridge added to the proxy features' "
                                    "second-moment matrix, relative to its mean diagonal", minimum=0,
                                    since="0.4", tasks=("misclassify",))
    synth_augment: int = _field(4096, "repair", "data-free: shifted/flipped and mixup copies of the synthesised "
                                "images added to the proxy (half each)", minimum=0, since="0.3")

    unseen_band: float = _field(0.2, "unseen task", "task unseen: the largest width, as a fraction of the "
                                "reference distribution, of the loss band each instance must reach (a band is "
                                "1/k wide for k >= 1/unseen_band instances)", minimum=0, exclusive=True,
                                maximum=1.0, since="0.4", tasks=("unseen",))
    unseen_min_band: float = _field(0.05, "unseen task", "task unseen: the smallest width of a band, as a fraction "
                                    "of the reference distribution (bands of neighbouring ranks then overlap; "
                                    "0: exactly 1/k; no change for k <= 20)", minimum=0, maximum=1.0, since="0.4",
                                    tasks=("unseen",))
    settle_steps: int = _field(0, "unseen task", "task unseen, method repair: steps of a settling phase that "
                               "moves the forget set into bands re-read from the repaired model (0: none)",
                               minimum=0, since="0.4", tasks=("unseen",))
    unseen_logit_weight: float = _field(10.0, "unseen task", "task unseen, method repair: weight of the mean squared "
                                        "difference of centred logits from the original's, beside the KL, in the "
                                        "repair (keeps the confidence scale the bands are read on)", minimum=0,
                                        since="0.4", tasks=("unseen",))

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "UnlearnConfig":
        """Check every field against its declared constraints (type, bounds, choices); raise
        :class:`ConfigError` naming the field."""
        for f in fields(self):
            check_value(f, getattr(self, f.name))
        return self

    def replace(self, **changes: Any) -> "UnlearnConfig":
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"unknown config field(s) {sorted(unknown)}; valid: {sorted(f.name for f in fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def hashed_dict(self, exclude=("seed", "device"), drop_groups=(), task: Optional[str] = None) -> Dict[str, Any]:
        """The fields a result depends on, for results stores: without ``exclude``, without the fields of the
        groups ``drop_groups`` (method-specific groups no method of the store reads), without the fields
        only other tasks read (given the store's ``task``), and without fields added after 0.2 that are at
        their ``hash_omit`` value (so a hash written before they existed stays valid)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in exclude
                and f.metadata["group"] not in drop_groups
                and not (task is not None and f.metadata["tasks"] is not None and task not in f.metadata["tasks"])
                and not (f.metadata["since"] > "0.2" and getattr(self, f.name) == f.metadata["hash_omit"])}

    def repair_budget(self, k: int) -> int:
        """The repair phase's step budget for a request of ``k`` instances: :attr:`repair_steps`, or when it is
        ``None`` (automatic, the default since 0.4.0) :data:`REPAIR_STEPS`, doubled to
        :data:`LARGE_REQUEST_REPAIR_STEPS` from :data:`LARGE_REQUEST` instances on. At k = 128 on the CIFAR-10
        ResNet-20 the 300 steps were spent in every cell with the held-out KL still falling; 600 took the D_r
        lost from 3.05 to 1.50 with proxy images and from 7.72 to 5.84 data-free (3 seeds each), where 300 steps
        at k = 16 and 64 already met the targets of issue #11 (BENCHMARKS.md 5a'', 5b'')."""
        if self.repair_steps is not None:
            return self.repair_steps
        return LARGE_REQUEST_REPAIR_STEPS if k >= LARGE_REQUEST else REPAIR_STEPS

    def eval_batch(self, device: Any = None) -> int:
        """The batch size of predictions and checks on ``device`` (a ``torch.device``, a name, or ``None``:
        :attr:`device`, else the CPU): :attr:`eval_batch_size`, or when it is ``None``
        :func:`default_eval_batch` (64 on the CPU, 1024 elsewhere)."""
        if self.eval_batch_size is not None:
            return self.eval_batch_size
        return default_eval_batch(device if device is not None else self.device)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "UnlearnConfig":
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; available: {', '.join(sorted(PRESETS))}")
        return cls().replace(**{**PRESETS[name]["config"], **overrides})


# The unlearning hyperparameters of the authors' run scripts (see docs in PRESETS[...]["source"]), and l2ul's
# fast request.
PRESETS: Dict[str, Dict[str, Any]] = {
    "cifar10-resnet18": {
        "config": dict(adv_per_instance=20, pgd_eps=4.0, lr=1e-3, reg_lambda=1.0,
                       adv_batch_size=256, forget_batch_size=32),
        "source": "main_unlearn_cifar10_mixed_label_resnet18.py + run_unlearn_cifar_imagenet.sh",
    },
    "cifar100-resnet50": {
        "config": dict(adv_per_instance=200, pgd_eps=4.0, lr=1e-3, reg_lambda=1.0,
                       adv_batch_size=256, forget_batch_size=32),
        "source": "main_unlearn_cifar100_mixed_label_resnet50.py + run_unlearn_cifar_imagenet.sh",
    },
    "cifar100-vit": {
        "config": dict(adv_per_instance=200, pgd_eps=4.0, lr=1e-3, reg_lambda=1.0,
                       adv_batch_size=512, forget_batch_size=32, eval_batch_size=512),
        "source": "main_unlearn_cifar100_mixed_label_vit.py + run_unlearn_cifar_imagenet.sh",
    },
    "imagenet-resnet50": {
        "config": dict(adv_per_instance=200, pgd_eps=4.0, lr=1e-3, reg_lambda=1.0,
                       adv_batch_size=128, forget_batch_size=16),
        "source": "main_unlearn_imagenet_mixed_label_resnet50.py + run_unlearn_cifar_imagenet.sh",
    },
    "utkface-resnet18": {
        "config": dict(adv_per_instance=300, pgd_eps=2.0, lr=1e-3, reg_lambda=1.0,
                       adv_batch_size=128, forget_batch_size=128, eval_batch_size=128),
        "source": "main_unlearn_utkface_resnet18.py",
    },
    # not a paper recipe: l2ul's fast request (method repair, task misclassify): the closed-form head edit of
    # l2ul.head_edit, no repair steps (BENCHMARKS.md section 6c: seconds instead of minutes, for some D_r)
    "fast": {
        "config": dict(forget_phase="head_edit", repair_steps=0),
        "source": "l2ul: repair with --forget-phase head_edit --repair-steps 0 (misclassify; BENCHMARKS.md 6c)",
    },
}
