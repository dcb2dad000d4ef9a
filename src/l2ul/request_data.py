"""The data a method receives for one deletion request, from the dataset and the user's specs
(:func:`method_data`: the remaining data, the proxy images; :func:`keep_forgotten_data`: the earlier
requests' instances; :func:`repair_toward_model` and :func:`teacher_ingredients`: another model to repair
toward), for :func:`l2ul.pipeline.run_request`."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from .errors import ConfigError, L2ULError
from .methods import get_method
from .requests import parse_forget_ids

__all__ = ["method_data", "keep_forgotten_data", "check_repair_toward", "repair_toward_model", "teacher_ingredients"]


def method_data(method, bundle, request_ids: Sequence[int], *, proxy: Optional[str] = None,
                allow_training_proxy: bool = False) -> Dict[str, Any]:
    """The data a method declares it needs, from the dataset: ``retain`` is the training data outside the
    request (only ``oracle``-like methods declare it); ``proxy`` the unlabeled images of the spec ``proxy``
    (:func:`l2ul.proxy.load_proxy`), refused when they overlap the training split unless
    ``allow_training_proxy`` (and always when they contain a forget instance)."""
    m = get_method(method)
    data: Dict[str, Any] = {}
    if "retain" in m.data:
        data["retain"] = bundle.train_subset(bundle.retain_indices(list(request_ids)))
    if proxy is not None:
        if "proxy" not in m.data + m.optional_data:
            raise ConfigError(f"method {m.name!r} does not use proxy data; drop it or use method 'repair'",
                              field="proxy")
        from .proxy import check_not_training_data, describe_proxy, load_proxy

        xf, _ = bundle.stack_train(list(request_ids))
        images = load_proxy(proxy, image_shape=tuple(xf.shape[1:]))
        check_not_training_data(images, bundle, allow=allow_training_proxy, forget=xf)
        images.l2ul_source = describe_proxy(proxy, images)
        data["proxy"] = images
    missing = [n for n in m.data if n not in data]
    if missing:
        raise L2ULError(f"method {m.name!r} needs {', '.join(missing)} data, which this command cannot supply")
    return data


def keep_forgotten_data(method, bundle, request, spec: str):
    """``(images, labels)`` of the earlier requests' instances ``spec`` (ids as for ``--forget-ids``), less this
    request's own; their ids go to ``request.extra["keep_forgotten"]``. Refused for a method that cannot keep
    them (it does not declare ``keep_forgotten``) and for a task other than misclassify."""
    m = get_method(method)
    if "keep_forgotten" not in m.data + m.optional_data:
        raise ConfigError(f"method {m.name!r} cannot keep earlier requests' instances forgotten "
                          "(--keep-forgotten); use method 'repair'", field="keep_forgotten")
    if request.task != "misclassify":
        raise ConfigError(f"--keep-forgotten keeps instances off their label: a misclassify request's option, "
                          f"not {request.task}'s", field="keep_forgotten")
    own = set(request.ids)
    ids = [i for i in parse_forget_ids(spec, n_train=bundle.n_train, train_ids=bundle.train_ids) if i not in own]
    request.extra["keep_forgotten"] = {"ids": ids, "source": f"--keep-forgotten {spec}"}
    return bundle.stack_train(ids) if ids else None


def check_repair_toward(method, repair_toward, prepared) -> None:
    """Refuse ``repair_toward`` beside a prepared request (give ``PreparedRequest.teacher``) or for a method
    that distils toward no teacher."""
    if repair_toward is None:
        return
    if prepared is not None:
        raise ConfigError("give the teacher as the prepared request's teacher, not beside it", field="repair_toward")
    if "teacher" not in get_method(method).ingredients:
        raise ConfigError(f"method {method!r} distils toward no teacher (--repair-toward); use method 'repair'",
                          field="repair_toward")


def repair_toward_model(bundle, request, repair_toward):
    """The model a repair distils toward instead of the one being unlearned (``--repair-toward``: an l2ul model
    file, or an ``nn.Module``), checked against the dataset and recorded in ``request.extra["repair_toward"]``
    with its state hash. For successive requests it is the original model: each request then repairs toward
    the original's outputs, so the chain's losses do not compound (BENCHMARKS.md 5c)."""
    from torch import nn

    from .bench.store import model_fingerprint
    from .loading import check_fit, load_model_from

    teacher = repair_toward if isinstance(repair_toward, nn.Module) else load_model_from(model=repair_toward)
    check_fit(teacher, bundle)
    request.extra["repair_toward"] = {
        "model": "an nn.Module" if isinstance(repair_toward, nn.Module) else str(repair_toward),
        "state_sha256": model_fingerprint(teacher)}
    return teacher


def teacher_ingredients(teacher, request, xf, yf, data, config, progress) -> Dict[str, Any]:
    """The ``proxy`` (the caller's, or data-free the teacher's own cached synthesis) and ``teacher`` (its
    outputs on it) ingredients, prepared from ``teacher`` as :func:`l2ul.engine.unlearn` would on the model."""
    from . import engine

    return engine.prepare_ingredients(teacher, xf, yf, ["proxy", "teacher"], config=config, task=request.task,
                                      targets=request.targets, data=data, progress=progress)
