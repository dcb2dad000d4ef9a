"""Throwaway experiment for issue #11: forget, then repair on unlabeled proxy images.

Phase 1 (forget): cross-entropy toward each forget instance's nearest wrong class, fixed once from the
original model's logits; batch norm frozen (eval mode); SGD; stop as soon as no forget instance is predicted
as its label.

Phase 2 (repair): ``hinge_weight * mean(relu(z_y - max_{j != y} z_j + margin))`` on the forget set plus
``KL(original || current)`` (temperature ``T``, times ``T^2``) on batches of unlabeled proxy images, whose
original-model outputs are computed once. A held-out part of the proxy (never trained on) drives the
stopping rule: every ``check_every`` steps its KL to the original is measured; the run stops when that KL
fell by less than ``tol`` (relative) over the last ``window`` steps (and ``min_steps`` are done). D_r and
D_test are measured only for the report (at ``report_at`` steps and at the stop), never by the rule.
After every repair step the forget set is checked (eval mode); a step that re-admits an instance is undone.

Usage (one torch thread):
    OMP_NUM_THREADS=1 python benchmarks/repair_probe.py --shared /work/shared --seeds 0 --proxy test \
        --out benchmarks/results/repair_probe/runs.jsonl
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import l2ul
from l2ul.requests import random_forget_ids

K = 16
N_DR = 4000


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def acc(model, x, y, bs=500):
    model.eval()
    hit = 0
    with torch.no_grad():
        for s in range(0, len(x), bs):
            hit += int((model(x[s:s + bs]).argmax(1) == y[s:s + bs]).sum())
    return 100.0 * hit / len(x)


def logits_of(model, x, bs=500):
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[s:s + bs]) for s in range(0, len(x), bs)])


def setup(shared: Path):
    model = l2ul.import_state_dict("resnet20", shared / "datasets/pretrained/cifar10_resnet20-12fca82f.th")
    model.eval()
    data = l2ul.load_dataset(f"cifar10-jpeg:{shared}/datasets/cifar10_jpeg.npz")
    rng = np.random.default_rng(12345)
    test_perm = rng.permutation(data.n_test)
    proxy_idx, eval_idx = np.sort(test_perm[:5000]), np.sort(test_perm[5000:])
    forget_sets = {s: random_forget_ids(K, n_train=data.n_train, seed=s, labels=data.train_labels) for s in (0, 1, 2)}
    excluded = set(i for f in forget_sets.values() for i in f)
    pool = np.array([i for i in range(data.n_train) if i not in excluded])
    dr_idx = np.sort(np.random.default_rng(54321).choice(pool, N_DR, replace=False))
    x_dr, y_dr = data.stack_train(dr_idx)
    from l2ul.data import stack

    x_te, y_te = stack(data.test, eval_idx)
    x_px, _ = stack(data.test, proxy_idx)       # labels dropped: the proxy is unlabeled
    return model, data, forget_sets, (x_dr, y_dr), (x_te, y_te), x_px


def forget_phase(model, x_f, y_f, *, lr=1e-3, momentum=0.9, max_steps=300):
    """Nearest-wrong-class CE, targets fixed once from the original logits, BN frozen."""
    work = copy.deepcopy(model).eval()
    with torch.no_grad():
        z = work(x_f)
    z[torch.arange(len(y_f)), y_f] = float("-inf")
    targets = z.argmax(1)
    opt = torch.optim.SGD(work.parameters(), lr=lr, momentum=momentum)
    t0 = time.perf_counter()
    steps = 0
    while steps < max_steps:
        with torch.no_grad():
            if not bool((work(x_f).argmax(1) == y_f).any()):
                break
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(work(x_f), targets).backward()
        opt.step()
        steps += 1
    with torch.no_grad():
        df = float((work(x_f).argmax(1) == y_f).float().mean()) * 100
    return work, steps, time.perf_counter() - t0, df


def margins(z, y):
    zy = z.gather(1, y[:, None]).squeeze(1)
    other = z.clone()
    other[torch.arange(len(y)), y] = float("-inf")
    return zy - other.max(1).values       # > 0: predicted as its label


def kl_to(teacher_logp, student_logits, T):
    return F.kl_div(F.log_softmax(student_logits / T, 1), teacher_logp, log_target=True,
                    reduction="batchmean") * (T * T)


def repair_phase(work, original, x_f, y_f, proxy, *, steps, lr, opt_name, momentum, hinge_weight, margin,
                 batch_size, T, bn, heldout_frac, check_every, window, tol, min_steps, report_at, evals, seed,
                 fix_steps=10, fix_lr=1e-2, sched_name="none", heldout_fixed=0):
    gen = torch.Generator().manual_seed(seed)
    if heldout_fixed:
        # the first heldout_fixed images are held out; the rest (incl. augmentations made only from the
        # remaining originals) are trained on, so no held-out image has an augmented twin in training
        n_h = heldout_fixed
        held, train = proxy[:n_h], proxy[n_h:]
    else:
        perm = torch.randperm(len(proxy), generator=gen)
        n_h = max(64, min(1000, int(round(heldout_frac * len(proxy)))))
        held, train = proxy[perm[:n_h]], proxy[perm[n_h:]]
    t_setup = time.perf_counter()
    with torch.no_grad():
        teach_train = F.log_softmax(logits_of(original, train) / T, 1)
        teach_held_logits = logits_of(original, held)
    teach_held_p = teach_held_logits.argmax(1)
    t_setup = time.perf_counter() - t_setup
    bn_stats0 = {n: b.clone() for n, b in work.named_buffers() if "running" in n}
    params = [p for p in work.parameters()]
    if opt_name == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    else:
        opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps) if sched_name == "cosine" else None
    best = {"kl": float("inf"), "step": 0, "state": None}

    def held_metrics():
        z = logits_of(work, held)
        kl = float(kl_to(F.log_softmax(teach_held_logits, 1), z, 1.0))
        agree = float((z.argmax(1) == teach_held_p).float().mean()) * 100
        return kl, agree

    def forget_ok(with_original_bn=False):
        work.eval()
        if with_original_bn:
            cur = {n: b.clone() for n, b in work.named_buffers() if "running" in n}
            bufs = dict(work.named_buffers())
            for n, b in bn_stats0.items():
                bufs[n].copy_(b)
        with torch.no_grad():
            m = margins(work(x_f), y_f)
        if with_original_bn:
            for n, b in cur.items():
                bufs[n].copy_(b)
        return m

    curve, reports = [], {}
    kl0, ag0 = held_metrics()
    curve.append({"step": 0, "held_kl": kl0, "held_agree": ag0})
    stop_step, readmit, readmit_orig_bn, undone = None, 0, 0, 0
    min_margin = float("inf")
    batches = None
    t0 = time.perf_counter()
    t_eval = 0.0
    step = 0
    while step < steps:
        if batches is None or not batches:
            batches = list(torch.randperm(len(train), generator=gen).split(batch_size))
        idx = batches.pop()
        xb = train[idx]
        prev = copy.deepcopy(work.state_dict())
        opt.zero_grad(set_to_none=True)
        if bn == "freeze":
            work.eval()
            z = work(torch.cat([xb, x_f]))
            zb, zf = z[:len(xb)], z[len(xb):]
        else:
            work.train()
            zb = work(xb)
            work.eval()
            zf = work(x_f)
        loss = kl_to(teach_train[idx], zb, T)
        if hinge_weight:
            loss = loss + hinge_weight * F.relu(margins(zf, y_f) + margin).mean()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        step += 1
        m = forget_ok()
        if bool((m > 0).any()):
            # a forget instance is back on its label: push it out again with forget-only hinge steps (plain
            # SGD, BN frozen); if that fails, undo the step. Never re-admit a forget instance.
            readmit += 1
            for _ in range(fix_steps):
                work.eval()
                work.zero_grad(set_to_none=True)
                F.relu(margins(work(x_f), y_f) + margin).mean().backward()
                with torch.no_grad():
                    for p in params:
                        if p.grad is not None:
                            p.sub_(fix_lr * p.grad)
                m = forget_ok()
                if not bool((m > 0).any()):
                    break
            else:
                undone += 1
                work.load_state_dict(prev)
                m = forget_ok()
        if bn == "train":
            mo = forget_ok(with_original_bn=True)
            readmit_orig_bn += int(bool((mo > 0).any()))
        min_margin = min(min_margin, float(-m.max()))
        te = time.perf_counter()
        if step % check_every == 0:
            kl, ag = held_metrics()
            curve.append({"step": step, "held_kl": kl, "held_agree": ag, "loss": float(loss.detach())})
            log(f"    {step}: held kl {kl:.4f} agree {ag:.1f} loss {float(loss.detach()):.4f} readmit {readmit} "
                f"undone {undone} t {time.perf_counter() - t0:.0f}s")
            if not math.isfinite(kl):
                log("    diverged")
                break
            if kl < best["kl"]:
                best = {"kl": kl, "step": step, "state": copy.deepcopy(work.state_dict())}
            if stop_step is None and step >= min_steps:
                back = [c for c in curve if c["step"] == step - window]
                if back and (back[0]["held_kl"] - kl) < tol * back[0]["held_kl"]:
                    stop_step = step
                    reports["stop"] = {"step": step, **evals(work), "seconds": time.perf_counter() - t0 - t_eval}
                    log(f"  stop rule fired at {step}: {reports['stop']}")
        if step in report_at:
            reports[str(step)] = {"step": step, **evals(work), "seconds": time.perf_counter() - t0 - t_eval}
            log(f"  step {step}: {reports[str(step)]} held kl {curve[-1]['held_kl']:.4f} agree {curve[-1]['held_agree']:.1f}")
        t_eval += time.perf_counter() - te
        if stop_step is not None and step >= max(report_at, default=0):
            break
    final_state = copy.deepcopy(work.state_dict())
    if best["state"] is not None:
        work.load_state_dict(best["state"])
        m = forget_ok()
        reports["best_heldout"] = {"step": best["step"], "held_kl": best["kl"], **evals(work),
                                   "D_f_ok": bool((m < 0).all())}
        log(f"  best held-out checkpoint: {reports['best_heldout']}")
    work.load_state_dict(final_state)
    return {"curve": curve, "reports": reports, "stop_step": stop_step, "readmit_steps": readmit, "steps_undone": undone,
            "readmit_with_original_bn": readmit_orig_bn, "min_forget_gap": min_margin,
            "teacher_seconds": t_setup, "n_heldout": n_h, "n_train_proxy": len(train)}


def build_proxy(kind, model, x_px, x_f, y_f, args):
    info = {"kind": kind}
    t0 = time.perf_counter()
    if kind == "test":
        return x_px, {**info, "describe": "5000 CIFAR-10 test images (unlabeled)", "seconds": 0.0}
    if kind.startswith("deepinv"):
        from l2ul.synthesis import augment_images, cached_synthesis, mixup_images

        chunks, secs, cached, inclass = [], 0.0, [], []
        n_chunks = math.ceil(args.synth_n / args.synth_chunk)
        for c in range(n_chunks):
            r = cached_synthesis(model, args.synth_chunk, args.cache_dir, image_shape=(3, 32, 32), num_classes=10,
                                 steps=args.synth_steps, lr=args.synth_lr, batch_size=args.synth_batch,
                                 seed=1000 + c, bn_weight=args.synth_bn_weight, tv_weight=args.synth_tv,
                                 lr_schedule=args.synth_schedule,
                                 progress=(lambda d, t, c=c: log(f"  synth chunk {c}: {d}/{t}") if d % 50 == 0 else None))
            chunks.append(r.images)
            secs += r.seconds
            cached.append(r.from_cache)
            inclass.append(r.in_class)
            log(f"  chunk {c}: {r.describe()}")
        x = torch.cat(chunks)[:args.synth_n]
        info.update(n_inverted=len(x), synthesis_seconds=secs, from_cache=cached,
                    in_class=float(np.mean(inclass)))
        # hold out 10% of the inverted images (a random tenth) before augmenting from the others only
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(99))
        n_h = max(32, len(x) // 10)
        held, rest = x[perm[:n_h]], x[perm[n_h:]]
        info["heldout_fixed"] = n_h
        if args.augment_n:
            extra = []
            if "mixup" in kind:
                extra.append(mixup_images(rest, args.augment_n // 2, seed=7))
                extra.append(augment_images(rest, args.augment_n - args.augment_n // 2, seed=8))
            else:
                extra.append(augment_images(rest, args.augment_n, seed=8))
            rest = torch.cat([rest] + extra)
        x = torch.cat([held, rest])
        info["describe"] = f"{info['n_inverted']} inverted images + {len(x) - info['n_inverted']} augmented"
        info["seconds"] = secs
        return x, info
    if kind == "adversarial":
        from l2ul.synthesis import adversarial_proxy

        x = adversarial_proxy(model, x_f, y_f, 10, per_instance=20, seed=0)
        return x, {**info, "describe": f"{len(x)} PGD examples of the forget set", "seconds": time.perf_counter() - t0}
    raise SystemExit(f"unknown proxy {kind}")


def summarize(path):
    """Markdown rows from runs.jsonl: one per run and report point."""
    rows = ["| tag | seed | proxy | synth s | forget steps / s | D_r after forget | point | step | D_f | D_r | D_test | repair s | re-admissions |",
            "|:---|---:|:---|---:|---:|---:|:---|---:|---:|---:|---:|---:|---:|"]
    for line in open(path):
        r = json.loads(line)
        rep = r["repair"]
        syn = r["proxy"].get("synthesis_seconds")
        pts = sorted(rep["reports"].items(), key=lambda kv: (kv[0] in ("stop", "best_heldout"), kv[1]["step"]))
        for name, v in pts:
            rows.append(f"| {r['tag']} | {r['seed']} | {r['proxy']['describe']} | {'' if syn is None else f'{syn:.0f}'} | "
                        f"{r['forget']['steps']} / {r['forget']['seconds']:.1f} | {r['forget']['D_r']:.1f} | {name} | "
                        f"{v['step']} | {r['D_f_end']:.0f} | {v['D_r']:.1f} | {v['D_test']:.1f} | "
                        f"{v.get('seconds', float('nan')):.0f} | {rep['readmit_steps']} ({rep['steps_undone']} undone) |")
    print("\n".join(rows))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--summarize":
        return summarize(sys.argv[2])
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="/work/shared")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--proxy", default="test", help="test | deepinv | deepinv_aug | deepinv_mixup | adversarial")
    ap.add_argument("--tag", default="")
    ap.add_argument("--out", default="benchmarks/results/repair_probe/runs.jsonl")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--opt", default="sgd", choices=["sgd", "adam"])
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--hinge-weight", type=float, default=10.0)
    ap.add_argument("--margin", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--T", type=float, default=1.0)
    ap.add_argument("--bn", default="freeze", choices=["freeze", "train"])
    ap.add_argument("--heldout-frac", type=float, default=0.1)
    ap.add_argument("--check-every", type=int, default=25)
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--tol", type=float, default=0.05)
    ap.add_argument("--min-steps", type=int, default=100)
    ap.add_argument("--report-at", default="100,200,300,400")
    ap.add_argument("--synth-n", type=int, default=512)
    ap.add_argument("--synth-chunk", type=int, default=256)
    ap.add_argument("--synth-steps", type=int, default=200)
    ap.add_argument("--synth-lr", type=float, default=0.1)
    ap.add_argument("--synth-batch", type=int, default=256)
    ap.add_argument("--synth-bn-weight", type=float, default=10.0)
    ap.add_argument("--synth-tv", type=float, default=5e-3)
    ap.add_argument("--synth-schedule", default="constant")
    ap.add_argument("--augment-n", type=int, default=0)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--fix-lr", type=float, default=1e-3)
    ap.add_argument("--sched", default="none", choices=["none", "cosine"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    t0 = time.perf_counter()
    model, data, forget_sets, (x_dr, y_dr), (x_te, y_te), x_px = setup(Path(args.shared))
    log(f"setup {time.perf_counter() - t0:.1f}s")

    def evals(m):
        return {"D_r": acc(m, x_dr, y_dr), "D_test": acc(m, x_te, y_te)}

    before = evals(model)
    log(f"before: {before}")
    report_at = {int(s) for s in args.report_at.split(",") if s}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        ids = forget_sets[seed]
        x_f, y_f = data.stack_train(ids)
        df0 = acc(model, x_f, y_f)
        proxy, pinfo = build_proxy(args.proxy, model, x_px, x_f, y_f, args)
        from l2ul.proxy import check_not_training_data

        t_chk = time.perf_counter()
        check_not_training_data(proxy, data, forget=x_f)
        t_chk = time.perf_counter() - t_chk
        work, f_steps, f_sec, df = forget_phase(model, x_f, y_f)
        after_forget = evals(work)
        log(f"seed {seed}: forget {f_steps} steps {f_sec:.1f}s D_f {df:.1f} {after_forget}")
        rep = repair_phase(work, model, x_f, y_f, proxy, steps=args.steps, lr=args.lr, opt_name=args.opt,
                           momentum=args.momentum, hinge_weight=args.hinge_weight, margin=args.margin,
                           batch_size=args.batch_size, T=args.T, bn=args.bn, heldout_frac=args.heldout_frac,
                           check_every=args.check_every, window=args.window, tol=args.tol,
                           min_steps=args.min_steps, report_at=report_at, evals=evals, seed=seed,
                           fix_lr=args.fix_lr, sched_name=args.sched,
                           heldout_fixed=pinfo.get("heldout_fixed", 0))
        with torch.no_grad():
            df_end = acc(work, x_f, y_f)
        rec = {"tag": args.tag, "seed": seed, "forget_ids": ids, "args": vars(args), "proxy": pinfo,
               "overlap_check_seconds": t_chk, "before": {**before, "D_f": df0},
               "forget": {"steps": f_steps, "seconds": f_sec, "D_f": df, **after_forget},
               "repair": rep, "D_f_end": df_end, "torch_threads": torch.get_num_threads()}
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        log(f"seed {seed} done: stop {rep['stop_step']} readmit {rep['readmit_steps']} undone {rep['steps_undone']} D_f end {df_end}")


if __name__ == "__main__":
    main()
